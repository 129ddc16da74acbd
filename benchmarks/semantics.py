"""What each loop guarantees of asyncio's scheduling rules (`make bench-semantics`).

Speed is compared only at equal semantics: a loop that skips something asyncio guarantees is
faster for that reason. Each probe here is one rule, checked on each loop named on the command
line (the loops of benchmarks/loops.py), True when it behaves as asyncio does.
"""

import contextvars
import sys
import threading
import time

var = contextvars.ContextVar("v", default="default")


def make(name):
    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from loops import factory

    return factory(name)()


def probe(name):
    loop = make(name)
    out = {}
    try:
        # call_soon runs in a copy of the caller's context
        seen = []
        var.set("caller")
        loop.call_soon(lambda: seen.append(var.get()))
        loop.call_soon(lambda: var.set("changed"))
        loop.call_soon(lambda: seen.append(var.get()))
        loop.call_soon(loop.stop)
        loop.run_forever()
        out["ctx copy per call_soon"] = seen == ["caller", "caller"]
        var.set("default")
        # explicit context honoured
        ctx = contextvars.Context()
        ctx.run(var.set, "given")
        seen = []
        loop.call_soon(lambda: seen.append(var.get()), context=ctx)
        loop.call_soon(loop.stop)
        loop.run_forever()
        out["context= honoured"] = seen == ["given"]
        # loop.time() is time.monotonic()
        out["time()==monotonic"] = abs(loop.time() - time.monotonic()) < 0.01
        # a failing callback goes to the exception handler, the loop goes on
        caught = []
        loop.set_exception_handler(lambda lp, c: caught.append(type(c.get("exception")).__name__))
        loop.call_soon(lambda: 1 / 0)
        loop.call_soon(loop.stop)
        loop.run_forever()
        out["errors to handler"] = caught == ["ZeroDivisionError"]
        # FIFO across call_soon and an already-due timer
        order = []
        loop.call_later(0, order.append, "t")
        loop.call_soon(order.append, "s")
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.call_soon(loop.stop)
        loop.run_forever()
        out["call_soon before due timer"] = order[:1] == ["s"]
        # threadsafe callback from another thread runs
        got = []
        t = threading.Thread(
            target=lambda: loop.call_soon_threadsafe(lambda: (got.append(1), loop.stop()))
        )
        t.start()
        loop.run_forever()
        t.join()
        out["threadsafe"] = got == [1]
    except Exception as e:
        out["error"] = repr(e)
    finally:
        loop.close()
    return out


for name in sys.argv[1:]:
    try:
        print(name, probe(name))
    except Exception as e:
        print(name, "ERR", e)
