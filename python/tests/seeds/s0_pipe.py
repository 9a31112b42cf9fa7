from multiprocessing import Process, Pipe


def send_messages(conn, messages):
    for message in messages:
        print(f"Sending: {message}")
        conn.send(message)
    conn.close()


def receive_messages(conn, num_messages):
    print("Receiving...")
    for _ in range(num_messages):
        message = conn.recv()
        print(f"Received: {message}")


if __name__ == '__main__':
    parent_conn, child_conn = Pipe()
    messages = ["Hello", "World", "!"]
    p1 = Process(target=send_messages, args=(child_conn, messages))
    p1.start()
    p2 = Process(target=receive_messages, args=(parent_conn, len(messages)))
    p2.start()
    p1.join()
    p2.join()
