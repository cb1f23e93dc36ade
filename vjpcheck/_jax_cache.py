"""JAX's persistent compilation cache, so that repeated runs skip recompiling kernels."""

from __future__ import annotations

import os
from pathlib import Path

from vjpcheck._errors import InvalidSpec

# Names a cache folder for `vjpcheck check` and the pytest plugin when no option does.
JAX_CACHE_VARIABLE = "VJPCHECK_JAX_CACHE"


def cache_folder(option: str | None, setting: str | Path | None = None) -> str | Path | None:
    """Choose the cache folder: the option, then $VJPCHECK_JAX_CACHE, then the setting."""
    return option or os.environ.get(JAX_CACHE_VARIABLE) or setting or None


def enable_jax_cache(folder: str | Path) -> Path:
    """Turn on JAX's persistent compilation cache in ``folder`` and return its path.

    By default JAX writes to the cache only what took at least a second to compile
    (``jax_persistent_cache_min_compile_time_secs``). vjpcheck compiles many small
    kernels in a fraction of a second each, so this lowers that threshold and the
    minimum entry size to cache everything. JAX decides once per process, at its first
    compilation, whether to use the cache, so call this before anything compiles.
    """
    import jax

    path = Path(folder).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InvalidSpec(
            f"cannot create the JAX compilation cache folder {str(path)!r} ({error}); "
            f"name a folder you can write to, or unset ${JAX_CACHE_VARIABLE}."
        ) from None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    # -1 turns the size limit off, where 0 would let JAX pick one for the file system.
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return path
