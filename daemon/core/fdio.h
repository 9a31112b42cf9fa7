/*
 * Reading and writing a descriptor without the usual loop around read()
 * and write(): EINTR is retried here, everything else is a result.
 */
#ifndef MPSUPD_FDIO_H
#define MPSUPD_FDIO_H

#include <stddef.h>
#include <sys/types.h>

/* One read(): the bytes read (> 0), 0 at end of file, or -errno
 * (-EAGAIN: nothing to read now from a non-blocking descriptor). */
ssize_t fd_read(int fd, void *buf, size_t len);
/* Write all n bytes of p (a blocking descriptor, or one known to take
 * them): 0, or -errno (-EIO when write() took nothing). */
int fd_write_all(int fd, const void *p, size_t n);

#endif
