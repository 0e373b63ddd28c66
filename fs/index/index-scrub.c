/* What imgcache-scrub asks of the index file beyond ic-index.h: whether
 * it holds no tables at all (a power cut right after it was created). */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "ic-index.h"
#include "ic-index-scrub.h"
#include "index-priv.h"
#include "ic-log.h"

int index_is_empty(const char *cache_dir)
{
    char res[32], path[PATH_MAX];
    struct stat sb;
    struct index ix = {0};
    int rc = ix_open_existing(cache_dir, SQLITE_OPEN_READONLY, &ix, &sb, path);

    if (rc < 0)
        return rc;
    if (sb.st_size == 0) { /* a power cut before the schema reached disk */
        ix_close_db(&ix);
        return 1;
    }
    rc = ix_query_text(ix.db, "SELECT count(*) FROM sqlite_master", res,
                    sizeof res);
    /* Not logged: the caller's index_open_ro() says what is wrong. */
    rc = rc == SQLITE_OK ? strcmp(res, "0") == 0 : -EIO;
    ix_close_db(&ix);
    return rc;
}
