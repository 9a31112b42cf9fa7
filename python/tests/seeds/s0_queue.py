from multiprocessing import Process, Queue


def func(q, message):
    q.put(message)


if __name__ == '__main__':
    q = Queue()
    a = Process(target=func, args=(q, [42, None, 'hello']))
    b = Process(target=func, args=(q, [111, True, 'world']))
    c = Process(target=func, args=(q, "wow"))
    a.start()
    b.start()
    print(q.get())
    print(q.get())
    c.start()
    a.join()
    b.join()
    print(q.get())
    c.join()
