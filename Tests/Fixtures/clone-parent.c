// What code injected into a process outside every run cgroup does to outlive the stray sweep's old rule ("spare a
// young process whose parent is outside the container"): clone(CLONE_PARENT) a child, so its parent is the runtime's
// shim, and let the clone be young. The child sleeps; the caller exits. Built static by the tests (gcc -static).
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char stack[64 * 1024];

static int child(void *arg) {
    (void)arg;
    execl("/bin/sleep", "sleep", "781", (char *)0);
    return 1;
}

int main(void) {
    if (clone(child, stack + sizeof stack, CLONE_PARENT | SIGCHLD, 0) < 0) {
        perror("clone");
        return 1;
    }
    return 0;
}
