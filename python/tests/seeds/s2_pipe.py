from multiprocessing import Process, Pipe, current_process
import time
import os


def worker(id, baseNum, conn):
    process_id = os.getpid()
    process_name = current_process().name
    sub_total = 0
    for _ in range(baseNum):
        sub_total += 1
    conn.send(sub_total)
    conn.close()
    print(f"Process ID: {process_id}, Process Name: {process_name}")
    print(f"Result : {sub_total}")
    return True


def main():
    parent_process_id = os.getpid()
    print(f"Parent process ID {parent_process_id}")
    start_time = time.time()
    parent_conn, child_conn = Pipe()
    processes = list()
    shared_result = 0
    for i in range(5):
        t = Process(target=worker, args=(1, 1000000, child_conn))
        processes.append(t)
        t.start()
    for process in processes:
        shared_result += parent_conn.recv()
        process.join()
    print("--- %s seconds ---" % (time.time() - start_time))
    print("Main-Processing : {}".format(shared_result))
    print("Main-Processing Done!")


if __name__ == "__main__":
    main()
