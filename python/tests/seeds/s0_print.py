from multiprocessing import Process


def print_func(num):
    for i in range(num):
        print("Print number %d" % i)


if __name__ == "__main__":
    p = Process(target=print_func, args=(5,))
    p.start()
    p.join()
