// A hostile agent's first move against a sibling run: attach to another process of its own uid and read its memory.
// Forks a child that sleeps, then tries PTRACE_ATTACH, PTRACE_SEIZE and process_vm_readv on it, and prints one line
// per attempt: "<call> ok" or "<call> denied <errno name>". Built static by the tests (gcc -static).
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *name(int e) { return e == EPERM ? "EPERM" : e == EACCES ? "EACCES" : e == ENOSYS ? "ENOSYS" : strerror(e); }

int main(void) {
    static char secret[32] = "sibling memory";
    pid_t child = fork();
    if (child == 0) { for (;;) pause(); }
    usleep(100000);
    if (ptrace(PTRACE_ATTACH, child, 0, 0) == 0) {
        printf("ptrace-attach ok\n");
        waitpid(child, 0, 0);
        ptrace(PTRACE_DETACH, child, 0, 0);
    } else {
        printf("ptrace-attach denied %s\n", name(errno));
    }
    if (ptrace(PTRACE_SEIZE, child, 0, 0) == 0) {
        printf("ptrace-seize ok\n");
        ptrace(PTRACE_DETACH, child, 0, 0);
    } else {
        printf("ptrace-seize denied %s\n", name(errno));
    }
    char buffer[32] = {0};
    struct iovec local = {buffer, sizeof buffer}, remote = {secret, sizeof secret};
    if (process_vm_readv(child, &local, 1, &remote, 1, 0) > 0) {
        printf("process_vm_readv ok %s\n", buffer);
    } else {
        printf("process_vm_readv denied %s\n", name(errno));
    }
    if (unshare(CLONE_NEWUSER) == 0) printf("unshare-user ok\n"); else printf("unshare-user denied %s\n", name(errno));
    kill(child, SIGKILL);
    return 0;
}
