"""Make a whole program use ferroloop (for ``python -m ferroloop``)."""

from __future__ import annotations

import asyncio
import warnings

from . import _compat


def install_everywhere() -> None:
    """asyncio.run, asyncio.new_event_loop and get_event_loop get ferroloop loops."""
    from . import EventLoopPolicy, new_event_loop

    if not _compat.PY314:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(EventLoopPolicy())
        return
    # 3.14 deprecates policies: replace the module-level factory instead.
    asyncio.events.new_event_loop = new_event_loop  # type: ignore[assignment]
    asyncio.new_event_loop = new_event_loop  # type: ignore[assignment]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(EventLoopPolicy())
