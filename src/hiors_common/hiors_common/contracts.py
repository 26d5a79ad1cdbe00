"""Facts several packages must agree on, defined once."""

# The task instruction of the simulated peg-in-hole task: the policy conditions on it, the
# recorder stores it with every episode and the trainer trains on the stored text, so the
# bringup passes one `prompt` argument to both (a mismatch would train and run on different
# instructions).
DEFAULT_PROMPT = 'insert the peg into the hole'

__all__ = ['DEFAULT_PROMPT']
