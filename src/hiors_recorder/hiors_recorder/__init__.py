"""Episode recorder (rosbag2 MCAP per episode) and the episode dataset library."""
