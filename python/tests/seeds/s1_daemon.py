import time
import multiprocessing


def daemon():
    print("Start", flush=True)
    time.sleep(4)
    print("Exit")


def main():
    d = multiprocessing.Process(name="daemon", target=daemon)
    d.daemon = True

    d.start()
    time.sleep(2)
    print("Main process terminated")


if __name__ == "__main__":
    main()
