"""pi0-style flow-matching VLA policy and the policy node with live checkpoint swap."""
