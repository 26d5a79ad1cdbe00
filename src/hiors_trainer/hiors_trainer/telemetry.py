"""The trainer's telemetry contract, defined once: the diagnostics status the trainer node
publishes and the numeric keys it carries, which dashboards read. Light (no torch) so readers
can import it."""

STATUS_NAME = 'trainer'
# loss: last optimiser step's loss; accepted / rejected: online episodes (rejected = every
# reason, threshold included); step: optimiser steps; samples_per_s: training throughput;
# version: last checkpoint version written; training: 1 while it has samples to train on, else 0.
TELEMETRY_KEYS = ('loss', 'accepted', 'rejected', 'step', 'samples_per_s', 'version', 'training')

__all__ = ['STATUS_NAME', 'TELEMETRY_KEYS']
