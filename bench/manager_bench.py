"""The same workload through Python's multiprocessing.Manager, for comparison
with mpsupd: C client processes each doing N/C operations on a shared dict,
value or list held by one Manager server process."""
import multiprocessing as mp
import sys
import time


def worker(op, d, v, lst, lock, n, start):
    start.wait()
    if op == "dict.set":
        for i in range(n):
            d["k%d" % (i % 10000)] = "xxx"
    elif op == "dict.get":
        for i in range(n):
            d.get("k%d" % (i % 10000))
    elif op == "value.add":
        # Manager Value has no atomic add: the lock makes it correct.
        for _ in range(n):
            with lock:
                v.value += 1
    elif op == "list.append":
        for _ in range(n):
            lst.append("xxx")
    elif op == "list.pop":
        for _ in range(n):
            try:
                lst.pop()
            except IndexError:
                pass


def main():
    op, conns, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with mp.Manager() as m:
        d, v, lst, lock = m.dict(), m.Value("i", 0), m.list(), m.Lock()
        if op == "list.pop":
            lst.extend(["xxx"] * total)
        start = mp.Event()
        per = total // conns
        procs = [mp.Process(target=worker, args=(op, d, v, lst, lock, per, start))
                 for _ in range(conns)]
        for p in procs:
            p.start()
        time.sleep(0.5)  # let every worker connect before the clock starts
        t0 = time.monotonic()
        start.set()
        for p in procs:
            p.join()
        dt = time.monotonic() - t0
        print("%s conns=%d requests=%d seconds=%.3f rate=%.0f" % (op, conns, per * conns, dt,
                                                                 per * conns / dt))


if __name__ == "__main__":
    main()
