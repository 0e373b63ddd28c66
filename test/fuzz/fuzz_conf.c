/* libFuzzer harness: the config parser (conf_parse_string, ic-conf.h).
 *
 * The input is config text.  Whatever it holds, the parser must return
 * 0 with a config that keeps the documented promises, or -1 with a
 * "fuzz.conf:..." message and no config; never crash, leak or hang. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "ic-block.h"
#include "ic-conf.h"

#define NAME "fuzz.conf"

static void check_net(const struct conf_net *n)
{
    FUZZ_CHECK(n->nmirrors == 0 || n->mirrors != NULL);
    for (size_t i = 0; i < n->nmirrors; i++)
        FUZZ_CHECK(n->mirrors[i] != NULL);
    FUZZ_CHECK(n->max_connections >= 1 && n->max_connections <= 64);
}

/* Sources: valid, unique names (they become file names in the mount). */
static void check_sources(const struct conf *c)
{
    FUZZ_CHECK(c->nsrc == 0 || c->src != NULL);
    for (size_t i = 0; i < c->nsrc; i++) {
        const struct conf_source *s = &c->src[i];
        FUZZ_CHECK(s->name != NULL && conf_name_valid(s->name));
        FUZZ_CHECK(s->origin != NULL && s->origin[0] != '\0');
        FUZZ_CHECK(block_size_valid(s->block_size));
        check_net(&s->net);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(c->src[j].kind != s->kind ||
                       strcmp(c->src[j].name, s->name) != 0);
    }
}

static void check_conf(const struct conf *c)
{
    FUZZ_CHECK(c->path != NULL && strcmp(c->path, NAME) == 0);
    FUZZ_CHECK(c->cache_dir != NULL && c->cache_dir[0] == '/');
    FUZZ_CHECK(block_size_valid(c->block_size));
    FUZZ_CHECK((c->file_mode & ~0555u) == 0); /* never a write bit */
    FUZZ_CHECK(!c->min_free_pct || c->min_free <= 100);
    check_net(&c->net);
    check_sources(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    struct conf *c = (struct conf *)&err; /* must be replaced */
    char *text = fuzz_strndup(data, size);

    if (text == NULL)
        return 0;
    err[0] = '\0';
    int rc = conf_parse_string(text, NAME, &c, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
    if (rc == 0) {
        FUZZ_CHECK(c != NULL);
        check_conf(c);
        conf_free(c);
    } else {
        FUZZ_CHECK(c == NULL);
        FUZZ_CHECK(fuzz_terminated(err, sizeof err));
        FUZZ_CHECK(strncmp(err, NAME ":", strlen(NAME) + 1) == 0);
    }
    free(text);
    return 0;
}
