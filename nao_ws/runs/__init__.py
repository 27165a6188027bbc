"""Run folders and what makes a run resumable: checkpoints, random states, devices."""
from .checkpoints import checkpoint_problem, host_copy, load_model_state
from .devices import CUDA_ONLY, check_device, resolve_device
from .files import file_above, fsync_write, io_error, strict_json, write_json_atomic
from .folder import CHECKPOINT_GLOB, RunDir, load_checkpoint_file
from .rng import generator_state, rng_state, seed_everything, set_generator_state, set_rng_state

__all__ = ["CHECKPOINT_GLOB", "CUDA_ONLY", "RunDir", "check_device", "checkpoint_problem", "file_above", "fsync_write",
           "generator_state", "host_copy", "io_error", "load_checkpoint_file", "load_model_state", "resolve_device",
           "rng_state", "seed_everything", "set_generator_state", "set_rng_state", "strict_json", "write_json_atomic"]
