// Exercises the layer's hooks from C; the Rust test checks the output and the fake session's log.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    char buf[256];
    struct stat st;

    int fd = open("/remote/hello.txt", O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("read: %s", buf);
    fstat(fd, &st);
    printf("fstat: size=%ld uid=%d\n", (long)st.st_size, (int)st.st_uid);
    close(fd);

    if (stat("/remote/hello.txt", &st) == 0)
        printf("stat: size=%ld reg=%d\n", (long)st.st_size, S_ISREG(st.st_mode));
    if (stat("/remote/dir", &st) == 0) printf("stat dir: dir=%d\n", S_ISDIR(st.st_mode));

    FILE *f = fopen("/remote/hello.txt", "r");
    if (f && fgets(buf, sizeof buf, f)) printf("fgets: %s", buf);
    if (f) fclose(f);

    DIR *d = opendir("/remote/dir");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') printf("entry: %s\n", e->d_name);
    if (d) closedir(d);

    errno = 0;
    if (open("/root/.kube/config", O_RDONLY) < 0) printf("kube: %s\n", strerror(errno));
    if (access("/root/.kube", F_OK) < 0) printf("kube access: %s\n", strerror(errno));
    if (open("/remote/new.txt", O_WRONLY | O_CREAT, 0644) < 0) printf("ro write: %s\n", strerror(errno));

    fd = open("/rw/out.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    printf("rw write: %zd\n", write(fd, "written remotely\n", 17));
    close(fd);
    fd = open("/rw/out.txt", O_RDWR);
    n = read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("rw read: %s", buf);
    printf("rw end: %ld\n", (long)lseek(fd, 0, SEEK_END));
    close(fd);
    FILE *w = fopen("/rw/log.txt", "w");
    fprintf(w, "via stdio\n");
    fclose(w);
    w = fopen("/rw/log.txt", "r");
    if (w && fgets(buf, sizeof buf, w)) printf("rw stdio: %s", buf);
    if (w) fclose(w);

    fd = open("/remote/big.bin", O_RDONLY);
    unsigned char b[4];
    printf("big pread: %zd", pread(fd, b, 4, 1000));
    printf(" %d %d\n", b[0], b[1]);
    close(fd);

    fd = open("/proc/self/status", O_RDONLY);
    printf("local: %d\n", fd >= 0 && read(fd, buf, 4) == 4 && memcmp(buf, "Name", 4) == 0);
    close(fd);

    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo("pod-only.svc.cluster.local", "80", &hints, &res);
    if (rc == 0) {
        char ip[64];
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof ip);
        printf("resolved: %s port %d\n", ip, ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port));
        int s = socket(AF_INET, SOCK_STREAM, 0);
        printf("connect: %d\n", connect(s, res->ai_addr, res->ai_addrlen));
        n = read(s, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        printf("banner: %s", buf);
        if (write(s, "ping\n", 5) != 5) printf("short write\n");
        n = read(s, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        printf("echo: %s", buf);
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        getpeername(s, (struct sockaddr *)&peer, &pl);
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
        printf("peer: %s:%d\n", ip, ntohs(peer.sin_port));
        close(s);
        freeaddrinfo(res);
    } else {
        printf("resolve failed: %s\n", gai_strerror(rc));
    }
    rc = getaddrinfo("nope.invalid", NULL, &hints, &res);
    printf("nope: %s\n", rc == EAI_NONAME ? "EAI_NONAME" : gai_strerror(rc));

    struct hostent *he = gethostbyname("pod-only.svc.cluster.local");
    if (he) printf("gethostbyname: %s\n", inet_ntoa(*(struct in_addr *)he->h_addr_list[0]));

    char hn[128];
    gethostname(hn, sizeof hn);
    printf("hostname: %s\n", hn);

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons(5353);
    inet_pton(AF_INET, "10.99.0.7", &to.sin_addr);
    sendto(u, "ping", 4, 0, (struct sockaddr *)&to, sizeof to);
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    n = recvfrom(u, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
    buf[n > 0 ? n : 0] = 0;
    char fip[64];
    inet_ntop(AF_INET, &from.sin_addr, fip, sizeof fip);
    printf("udp: %s from %s:%d\n", buf, fip, ntohs(from.sin_port));
    close(u);

    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in la = {0};
    la.sin_family = AF_INET;
    inet_pton(AF_INET, "127.0.0.1", &la.sin_addr);
    bind(l, (struct sockaddr *)&la, sizeof la);
    listen(l, 4);
    socklen_t ll = sizeof la;
    getsockname(l, (struct sockaddr *)&la, &ll);
    printf("listening: %d\n", ntohs(la.sin_port));
    close(l);

    fflush(stdout);
    pid_t p = fork();
    if (p == 0) {
        char *argv[] = {"cat", "/remote/hello.txt", NULL};
        char *envp[] = {"PATH=/bin:/usr/bin", NULL};
        execve("/bin/cat", argv, envp);
        _exit(127);
    }
    int status;
    waitpid(p, &status, 0);
    printf("child: %d\n", WEXITSTATUS(status));
    return 0;
}
