"""Is a name a local path or a Hub id? One answer for model and data sources (imports nothing)."""

from __future__ import annotations

import os


def looks_local(source: str, suffixes: tuple[str, ...] = ()) -> bool:
    """True when ``source`` can only be meant as a local path, whether or not it exists.

    A Hub id is ``name`` or ``owner/name``. A path is absolute, starts with ``.`` or ``~``, has more than one
    ``/`` (or the OS's own separator), or ends with one of ``suffixes`` (``.gguf``, ``.jsonl``), which Hub ids
    do not.
    """
    return (
        os.path.isabs(source)
        or source.startswith((".", "~", "/"))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
        or source.lower().endswith(suffixes)
    )
