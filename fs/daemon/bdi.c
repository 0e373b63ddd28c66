/* The mount's backing device (ic-bdi.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic-bdi.h"
#include "ic-util.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
    char *d = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' &&
            s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
            *d++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *d++ = *s++;
        }
    }
    *d = '\0';
}

int bdi_of_mount(const char *mnt, char *out, size_t len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    char dev[32] = "";
    while (getline(&line, &cap, f) > 0) {
        /* "ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ... - FSTYPE ...": only
         * an imgcache mount's line (something mounted over ours later
         * is not ours to tune). */
        char *sep = strstr(line, " - ");
        if (sep == NULL || strncmp(sep + 3, "fuse.imgcache ", 14) != 0)
            continue;
        *sep = '\0';
        char *save = NULL, *tok[5];
        int n = 0;
        for (char *t = strtok_r(line, " ", &save); t != NULL && n < 5;
             t = strtok_r(NULL, " ", &save))
            tok[n++] = t;
        if (n < 5)
            continue;
        unescape(tok[4]);
        if (strcmp(tok[4], mnt) == 0 && strlen(tok[2]) < sizeof dev) {
            strcpy(dev, tok[2]); /* the last one is the one on top */
            found = 1;
        }
    }
    free(line);
    fclose(f);
    if (!found)
        return -ENOENT;
    if (strlen(dev) >= len)
        return -ENAMETOOLONG;
    strcpy(out, dev);
    return 0;
}

int bdi_set_readahead(const char *bdi, uint64_t bytes)
{
    char path[96], val[32];
    if (snprintf(path, sizeof path, "/sys/class/bdi/%s/read_ahead_kb", bdi) >=
        (int)sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int n = snprintf(val, sizeof val, "%" PRIu64 "\n", bytes / 1024);
    ssize_t w = pwrite_full(fd, val, (size_t)n, 0);
    int r = w < 0 ? (int)w : w != n ? -EIO : 0;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}
