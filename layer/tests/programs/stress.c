// Threads sharing the session link, a signal handler that re-enters hooks, *at calls relative
// to a remote directory fd, and vfork+exec.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile long handled;

static void on_alarm(int sig) {
    (void)sig;
    struct stat st;
    // Re-enters the hooks: remote when the thread was outside layer code, else bypassed.
    stat("/remote/hello.txt", &st);
    int fd = open("/proc/self/stat", O_RDONLY);
    if (fd >= 0) close(fd);
    handled++;
}

static void *reader(void *arg) {
    long ok = 0;
    char buf[64];
    for (int i = 0; i < 30; i++) {
        int fd = open("/remote/hello.txt", O_RDONLY);
        if (fd >= 0 && read(fd, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0) ok++;
        if (fd >= 0) close(fd);
    }
    return (void *)ok;
}

int main(void) {
    pthread_t t[8];
    for (int i = 0; i < 8; i++) pthread_create(&t[i], NULL, reader, NULL);
    long total = 0;
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    printf("threads: %ld\n", total);

    signal(SIGALRM, on_alarm);
    struct itimerval it = {{0, 500}, {0, 500}};
    setitimer(ITIMER_REAL, &it, NULL);
    long good = 0;
    for (int i = 0; i < 300; i++) {
        struct stat st;
        if (stat("/remote/hello.txt", &st) == 0 && st.st_size == 19) good++;
        else if (errno != EINTR) printf("stat failed: %s\n", strerror(errno));
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("signals: %d stats: %ld\n", handled > 0, good);

    int dfd = open("/remote", O_RDONLY | O_DIRECTORY);
    int fd = openat(dfd, "hello.txt", O_RDONLY);
    char buf[64] = {0};
    printf("openat: %zd %s", read(fd, buf, sizeof buf - 1), buf);
    close(fd);
    struct stat st;
    int rc = fstatat(dfd, "hello.txt", &st, 0);
    printf("fstatat: %d %ld\n", rc, (long)st.st_size);
    printf("fstat dir: %d\n", fstat(dfd, &st) == 0 && S_ISDIR(st.st_mode));
    int dup_fd = dup(dfd);
    DIR *d = fdopendir(dup_fd);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n++;
    printf("fdopendir: %d\n", n);
    if (d) closedir(d);
    close(dfd);

    fflush(stdout);
    pid_t p = vfork();
    if (p == 0) {
        char *argv[] = {"cat", "/remote/hello.txt", NULL};
        execv("/bin/cat", argv);
        _exit(127);
    }
    int status;
    waitpid(p, &status, 0);
    printf("vfork child: %d\n", WEXITSTATUS(status));

    // Programs that close every fd (daemons, closefrom/close_range) must not break the link.
    for (int i = 3; i < 1024; i++) close(i);
    memset(buf, 0, sizeof buf);
    fd = open("/remote/hello.txt", O_RDONLY);
    printf("after close loop: %zd\n", read(fd, buf, sizeof buf - 1));
    close(fd);
    syscall(SYS_close_range, 3, ~0U, 0);
    fd = open("/remote/hello.txt", O_RDONLY);
    if (fd < 0) printf("open after close_range: %s\n", strerror(errno));
    printf("after close_range: %zd\n", read(fd, buf, sizeof buf - 1));
    close(fd);

    // A program that dup2s onto every high fd (the session sockets live at 500+) keeps its
    // files intact and the layer keeps working.
    int tmp = open("/tmp", O_RDWR | O_TMPFILE, 0600);
    for (int i = 500; i < 510; i++) dup2(tmp, i);
    fd = open("/remote/hello.txt", O_RDONLY);
    printf("after dup2 over high fds: %zd\n", read(fd, buf, sizeof buf - 1));
    close(fd);
    struct stat tst;
    fstat(tmp, &tst);
    printf("tmp file untouched: %ld\n", (long)tst.st_size);
    return 0;
}
