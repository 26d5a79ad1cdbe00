"""Episode recorder (rosbag2 MCAP per episode) and the episode dataset library."""
__version__ = '0.1.0'
