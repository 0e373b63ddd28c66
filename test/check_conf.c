/* Unit tests for the config parser (fs/config/conf.c, imgcache.conf(5)). */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ic-conf.h"

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

static struct conf *parse_ok(const char *text)
{
    struct conf *c = NULL;
    char err[512] = "";

    ck_assert_msg(conf_parse_string(text, "t.conf", &c, err, sizeof err) == 0,
                  "unexpected error: %s", err);
    ck_assert_ptr_nonnull(c);
    return c;
}

/* The whole message is compared: the line number is part of the contract. */
static void expect_err(const char *text, const char *want)
{
    struct conf *c = (struct conf *)&c; /* must be reset to NULL */
    char err[512] = "";

    ck_assert_int_eq(conf_parse_string(text, "t.conf", &c, err, sizeof err),
                     -EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(err, want);
}

static const struct conf_source *find_src(const struct conf *c,
                                          const char *name)
{
    for (size_t i = 0; i < c->nsrc; i++)
        if (!strcmp(c->src[i].name, name))
            return &c->src[i];
    ck_abort_msg("no source '%s'", name);
    return NULL;
}

/* ------------------------------------------------------------ valid */

static const char full_conf[] =
    "# imgcache test config\n"
    "[global]\n"
    "cache_dir = /srv/cache\n"
    "cache_max = 50G\n"
    "min_free = 5%\n"
    "block_size = 128K\n"
    "data_direct_io = yes\n"
    "direct_fill = no\n"
    "owner = qemu\n"
    "group = kvm\n"
    "mode = 0440\n"
    "origin_timeout = 45s\n"
    "connect_timeout = 500ms\n"
    "revalidate = 5m\n"
    "max_connections = 8\n"
    "require_strong_etag = yes\n"
    "proxy = http://proxy.example:3128\n"
    "ca_file = /etc/ssl/ca.pem\n"
    "netrc = /etc/imgcache/netrc\n"
    "mirror = http://gm1.example/x\n"
    "\n"
    "[template ubuntu.qcow2]\n"
    "origin = https://images.example.org/ubuntu-24.04.qcow2\n"
    "mirror = http://mirror.example.org/ubuntu-24.04.qcow2\n"
    "quota = 2G\n"
    "block_size = 1M\n"
    "pin = qcow2-metadata, 0-16M, profile:/etc/imgcache/ubuntu.boot\n"
    "proxy = http://other:8080\n"
    "ca_file = /tmp/ca2.pem\n"
    "netrc = /tmp/netrc2\n"
    "origin_timeout = 10\n"
    "connect_timeout = 2s\n"
    "revalidate = 0\n"
    "max_connections = 64\n"
    "require_strong_etag = no\n"
    "\n"
    "[directory nfs-templates]\n"
    "origin = /mnt/nfs/templates\n"
    "quota = 4G\n"
    "pin = 0-1M\n";

START_TEST(test_full)
{
    struct conf *c = parse_ok(full_conf);
    const struct conf_source *t, *d;

    ck_assert_str_eq(c->path, "t.conf");
    ck_assert_str_eq(c->cache_dir, "/srv/cache");
    ck_assert_uint_eq(c->cache_max, 50 * GiB);
    ck_assert_uint_eq(c->min_free, 5);
    ck_assert_int_eq(c->min_free_pct, 1);
    ck_assert_uint_eq(c->block_size, 128 * KiB);
    ck_assert_int_eq(c->data_direct_io, 1);
    ck_assert_int_eq(c->direct_fill, 0);
    ck_assert_int_eq(c->prewarm, 1); /* the default */
    ck_assert_str_eq(c->owner, "qemu");
    ck_assert_str_eq(c->group, "kvm");
    ck_assert_uint_eq(c->file_mode, 0440);
    ck_assert_uint_eq(c->net.origin_timeout_ms, 45000);
    ck_assert_uint_eq(c->net.connect_timeout_ms, 500);
    ck_assert_uint_eq(c->net.revalidate_ms, 300000);
    ck_assert_uint_eq(c->net.max_connections, 8);
    ck_assert_int_eq(c->net.require_strong_etag, 1);
    ck_assert_str_eq(c->net.proxy, "http://proxy.example:3128");
    ck_assert_str_eq(c->net.ca_file, "/etc/ssl/ca.pem");
    ck_assert_str_eq(c->net.netrc, "/etc/imgcache/netrc");
    ck_assert_uint_eq(c->net.nmirrors, 1);
    ck_assert_str_eq(c->net.mirrors[0], "http://gm1.example/x");
    ck_assert_uint_eq(c->nsrc, 2);

    t = &c->src[0];
    ck_assert_int_eq(t->kind, CONF_TEMPLATE);
    ck_assert_str_eq(t->name, "ubuntu.qcow2");
    ck_assert_int_eq(t->line, 22);
    ck_assert_str_eq(t->origin, "https://images.example.org/ubuntu-24.04.qcow2");
    ck_assert_uint_eq(t->quota, 2 * GiB);
    ck_assert_uint_eq(t->block_size, MiB);
    ck_assert_str_eq(t->pin,
                     "qcow2-metadata, 0-16M, profile:/etc/imgcache/ubuntu.boot");
    ck_assert_uint_eq(t->net.nmirrors, 1);
    ck_assert_str_eq(t->net.mirrors[0],
                     "http://mirror.example.org/ubuntu-24.04.qcow2");
    ck_assert_str_eq(t->net.proxy, "http://other:8080");
    ck_assert_str_eq(t->net.ca_file, "/tmp/ca2.pem");
    ck_assert_str_eq(t->net.netrc, "/tmp/netrc2");
    ck_assert_uint_eq(t->net.origin_timeout_ms, 10000);
    ck_assert_uint_eq(t->net.connect_timeout_ms, 2000);
    ck_assert_uint_eq(t->net.revalidate_ms, 0);
    ck_assert_uint_eq(t->net.max_connections, 64);
    ck_assert_int_eq(t->net.require_strong_etag, 0);

    d = &c->src[1];
    ck_assert_int_eq(d->kind, CONF_DIRECTORY);
    ck_assert_str_eq(d->name, "nfs-templates");
    ck_assert_int_eq(d->line, 37);
    ck_assert_str_eq(d->origin, "/mnt/nfs/templates");
    ck_assert_uint_eq(d->quota, 4 * GiB);
    ck_assert_str_eq(d->pin, "0-1M");
    /* Not set in the section: inherited from [global]. */
    ck_assert_uint_eq(d->block_size, 128 * KiB);
    ck_assert_uint_eq(d->net.origin_timeout_ms, 45000);
    ck_assert_uint_eq(d->net.connect_timeout_ms, 500);
    ck_assert_uint_eq(d->net.revalidate_ms, 300000);
    ck_assert_uint_eq(d->net.max_connections, 8);
    ck_assert_int_eq(d->net.require_strong_etag, 1);
    ck_assert_str_eq(d->net.proxy, "http://proxy.example:3128");
    ck_assert_str_eq(d->net.ca_file, "/etc/ssl/ca.pem");
    ck_assert_str_eq(d->net.netrc, "/etc/imgcache/netrc");
    ck_assert_uint_eq(d->net.nmirrors, 1);
    ck_assert_str_eq(d->net.mirrors[0], "http://gm1.example/x");
    /* A copy, not the global string: conf_free frees each list. */
    ck_assert_ptr_ne(d->net.mirrors[0], c->net.mirrors[0]);
    conf_free(c);
}
END_TEST

START_TEST(test_defaults)
{
    struct conf *c = parse_ok("[template a]\norigin = /srv/a\n");
    const struct conf_source *s = &c->src[0];

    ck_assert_str_eq(c->cache_dir, CONF_DEFAULT_CACHE_DIR);
    ck_assert_uint_eq(c->cache_max, 0);
    ck_assert_uint_eq(c->min_free, 0);
    ck_assert_int_eq(c->min_free_pct, 0);
    ck_assert_uint_eq(c->block_size, 64 * KiB);
    ck_assert_int_eq(c->data_direct_io, 0);
    ck_assert_int_eq(c->direct_fill, 1);
    ck_assert_int_eq(c->prewarm, 1);
    ck_assert_ptr_null(c->owner);
    ck_assert_ptr_null(c->group);
    ck_assert_uint_eq(c->file_mode, 0444);
    ck_assert_uint_eq(c->net.nmirrors, 0);
    ck_assert_uint_eq(c->net.origin_timeout_ms, 30000);
    ck_assert_uint_eq(c->net.connect_timeout_ms, 5000);
    ck_assert_uint_eq(c->net.revalidate_ms, 60000);
    ck_assert_uint_eq(c->net.max_connections, 4);
    ck_assert_uint_eq(c->nsrc, 1);
    ck_assert_uint_eq(s->quota, 0);
    ck_assert_uint_eq(s->block_size, 64 * KiB);
    ck_assert_ptr_null(s->pin);
    ck_assert_ptr_null(s->net.proxy);
    ck_assert_ptr_null(s->net.ca_file);
    ck_assert_ptr_null(s->net.netrc);
    ck_assert_uint_eq(s->net.nmirrors, 0);
    ck_assert_ptr_null(s->net.mirrors);
    ck_assert_uint_eq(s->net.origin_timeout_ms, 30000);
    ck_assert_uint_eq(s->net.connect_timeout_ms, 5000);
    ck_assert_uint_eq(s->net.revalidate_ms, 60000);
    ck_assert_uint_eq(s->net.max_connections, 4);
    ck_assert_int_eq(s->follow_symlinks, 0);
    conf_free(c);
}
END_TEST

START_TEST(test_follow_symlinks)
{
    struct conf *c = parse_ok("[directory d]\norigin = /srv/d\n"
                              "follow_symlinks = yes\n"
                              "[directory e]\norigin = /srv/e\n");

    ck_assert_int_eq(find_src(c, "d")->follow_symlinks, 1);
    ck_assert_int_eq(find_src(c, "e")->follow_symlinks, 0);
    conf_free(c);
    expect_err("[template a]\norigin = /a\nfollow_symlinks = yes\n",
               "t.conf:3: key 'follow_symlinks' is not allowed in "
               "[template a]");
    expect_err("[global]\nfollow_symlinks = no\n",
               "t.conf:2: key 'follow_symlinks' is not allowed in [global]");
    expect_err("[directory d]\norigin = /d\nfollow_symlinks = maybe\n",
               "t.conf:3: bad boolean 'maybe' for key 'follow_symlinks' "
               "(use yes or no)");
    expect_err("[directory w]\norigin = http://h/d\nfollow_symlinks = yes\n"
               "\n[template a]\norigin = /a\n",
               "t.conf:1: directory 'w': follow_symlinks applies to a path "
               "origin only");
}
END_TEST

START_TEST(test_empty)
{
    struct conf *c = parse_ok("");

    ck_assert_uint_eq(c->nsrc, 0);
    ck_assert_str_eq(c->cache_dir, CONF_DEFAULT_CACHE_DIR);
    conf_free(c);
    c = parse_ok("# only a comment\n\n   \n[global]\n");
    ck_assert_uint_eq(c->nsrc, 0);
    conf_free(c);
}
END_TEST

/* [global] after the sections still supplies their defaults, and explicit
 * section values win whatever the order. */
START_TEST(test_global_after_template)
{
    struct conf *c = parse_ok("[template a]\n"
                              "origin = http://h/a\n"
                              "origin_timeout = 7s\n"
                              "block_size = 4K\n"
                              "mirror = http://m/a\n"
                              "[template b]\n"
                              "origin = http://h/b\n"
                              "[global]\n"
                              "origin_timeout = 90s\n"
                              "revalidate = 0\n"
                              "block_size = 16M\n"
                              "max_connections = 2\n"
                              "proxy = http://p:1\n"
                              "mirror = http://g1/x\n"
                              "mirror = http://g2/x\n");
    const struct conf_source *a = find_src(c, "a"), *b = find_src(c, "b");

    ck_assert_uint_eq(a->net.origin_timeout_ms, 7000);
    ck_assert_uint_eq(a->block_size, 4 * KiB);
    ck_assert_uint_eq(a->net.nmirrors, 1);
    ck_assert_str_eq(a->net.mirrors[0], "http://m/a");
    ck_assert_uint_eq(a->net.revalidate_ms, 0);
    ck_assert_uint_eq(a->net.max_connections, 2);
    ck_assert_str_eq(a->net.proxy, "http://p:1");

    ck_assert_uint_eq(b->net.origin_timeout_ms, 90000);
    ck_assert_uint_eq(b->block_size, 16 * MiB);
    ck_assert_uint_eq(b->net.revalidate_ms, 0);
    ck_assert_uint_eq(b->net.connect_timeout_ms, 5000);
    ck_assert_uint_eq(b->net.nmirrors, 2);
    ck_assert_str_eq(b->net.mirrors[0], "http://g1/x");
    ck_assert_str_eq(b->net.mirrors[1], "http://g2/x");
    conf_free(c);
}
END_TEST

START_TEST(test_mirror_order)
{
    struct conf *c = parse_ok("[template a]\n"
                              "mirror = http://m1/a\n"
                              "origin = https://o/a\n"
                              "mirror = /mnt/m2/a\n"
                              "mirror = https://m3/a\n");
    const struct conf_source *a = &c->src[0];

    ck_assert_uint_eq(a->net.nmirrors, 3);
    ck_assert_str_eq(a->net.mirrors[0], "http://m1/a");
    ck_assert_str_eq(a->net.mirrors[1], "/mnt/m2/a");
    ck_assert_str_eq(a->net.mirrors[2], "https://m3/a");
    conf_free(c);
}
END_TEST

START_TEST(test_comments_crlf)
{
    struct conf *c = parse_ok("\xef\xbb\xbf# BOM, comments and CRLF\r\n"
                              "[global]   # the defaults\r\n"
                              "\tcache_max=1G#no space needed\r\n"
                              "  # indented comment\r\n"
                              "\r\n"
                              "[  template   spaced name  ] # trailing\r\n"
                              "origin\t=\t/srv/x   # inline\r\n"
                              "quota = 64KiB\r\n"
                              "pin = 0-16M,qcow2-metadata#a comment\r\n"
                              "[template last]\n"
                              "origin = /srv/last"); /* no final newline */

    ck_assert_uint_eq(c->cache_max, GiB);
    ck_assert_uint_eq(c->nsrc, 2);
    ck_assert_str_eq(c->src[0].name, "spaced name");
    ck_assert_int_eq(c->src[0].line, 6);
    ck_assert_str_eq(c->src[0].origin, "/srv/x");
    ck_assert_uint_eq(c->src[0].quota, 64 * KiB);
    ck_assert_str_eq(c->src[0].pin, "0-16M,qcow2-metadata");
    ck_assert_str_eq(c->src[1].origin, "/srv/last");
    conf_free(c);
}
END_TEST

START_TEST(test_sizes_and_durations)
{
    struct conf *c = parse_ok("[global]\n"
                              "cache_max = 4096\n"
                              "min_free = 512M\n"
                              "connect_timeout = 1\n"
                              "origin_timeout = 2m\n"
                              "[template a]\n"
                              "origin = /a\n"
                              "quota = 3T\n"
                              "block_size = 65536\n");

    ck_assert_uint_eq(c->cache_max, 4096);
    ck_assert_uint_eq(c->min_free, 512 * MiB);
    ck_assert_int_eq(c->min_free_pct, 0);
    ck_assert_uint_eq(c->net.connect_timeout_ms, 1000);
    ck_assert_uint_eq(c->net.origin_timeout_ms, 120000);
    ck_assert_uint_eq(c->src[0].quota, 3 * 1024 * GiB);
    ck_assert_uint_eq(c->src[0].block_size, 64 * KiB);
    conf_free(c);

    c = parse_ok("[global]\nmin_free = 0%\n");
    ck_assert_uint_eq(c->min_free, 0);
    ck_assert_int_eq(c->min_free_pct, 1);
    conf_free(c);
    c = parse_ok("[global]\nmin_free = 100%\nmode = 400\n");
    ck_assert_uint_eq(c->min_free, 100);
    ck_assert_uint_eq(c->file_mode, 0400);
    conf_free(c);
}
END_TEST

/* An empty proxy is kept: it tells curl to ignore the proxy environment. */
START_TEST(test_empty_proxy)
{
    struct conf *c = parse_ok("[global]\nproxy = http://p:3128\n"
                              "[template a]\norigin = http://h/a\nproxy =\n");

    ck_assert_str_eq(c->src[0].net.proxy, "");
    conf_free(c);
}
END_TEST

/* CernVM-FS's proxy list is kept as written (the origin parses it). */
START_TEST(test_proxy_list)
{
    struct conf *c = parse_ok(
        "[global]\nproxy = http://a:3128 | http://b:3128; http://c:3128;"
        "DIRECT\n[template a]\norigin = http://h/a\n");

    ck_assert_str_eq(c->net.proxy,
                     "http://a:3128 | http://b:3128; http://c:3128;DIRECT");
    conf_free(c);
}
END_TEST

START_TEST(test_err_proxy)
{
    expect_err("[global]\nproxy = http://a:1||http://b:1\n",
               "t.conf:2: proxy: empty proxy name in group 1");
    expect_err("[global]\n\nproxy = http://a:1;\n",
               "t.conf:3: proxy: empty proxy name in group 2");
    expect_err("[global]\nproxy = DIRECT;http://a:1\n",
               "t.conf:2: proxy: DIRECT must be the last group");
    expect_err("[global]\nproxy = http://a:1|DIRECT\n",
               "t.conf:2: proxy: DIRECT cannot be part of a '|' group "
               "(group 1)");
    expect_err("[template a]\norigin = http://h/a\nproxy = ftp://a:1\n",
               "t.conf:3: proxy: proxy 'ftp://a:1' has a scheme other than "
               "http, https, socks4(a) or socks5(h)");
    expect_err("[global]\nproxy = http://a:1 http://b:1\n",
               "t.conf:2: proxy: proxy 'http://a:1 http://b:1' contains a "
               "blank or a control character");
}
END_TEST

START_TEST(test_same_name_template_and_directory)
{
    struct conf *c = parse_ok("[template x]\norigin = /a\n"
                              "[directory x]\norigin = /d\n");

    ck_assert_uint_eq(c->nsrc, 2);
    conf_free(c);
}
END_TEST

/* ------------------------------------------------------------ errors */

START_TEST(test_err_unknown_section)
{
    expect_err("[global]\n\n[volume x]\n",
               "t.conf:3: unknown section kind 'volume' (expected global, "
               "template or directory)");
    expect_err("[Global]\n",
               "t.conf:1: unknown section kind 'Global' (expected global, "
               "template or directory)");
    expect_err("\n[template x\n",
               "t.conf:2: expected ']' at the end of the section header");
    expect_err("[global x]\n", "t.conf:1: [global] takes no name");
    expect_err("[global]\n[global]\n",
               "t.conf:2: duplicate [global] section (first defined at line 1)");
    expect_err("[template]\n",
               "t.conf:1: missing name: expected [template NAME]");
}
END_TEST

START_TEST(test_err_unknown_key)
{
    expect_err("[global]\ncache_max = 1G\nfoo = 1\n",
               "t.conf:3: unknown key 'foo' in [global]");
    expect_err("[template ubuntu]\norigin = /a\n\nfoo = bar\n",
               "t.conf:4: unknown key 'foo' in [template ubuntu]");
    expect_err("[directory d]\nQuota = 1G\n",
               "t.conf:2: unknown key 'Quota' in [directory d]");
    expect_err("[global]\norigin = /a\n",
               "t.conf:2: key 'origin' is not allowed in [global]");
    expect_err("[template a]\ncache_dir = /a\n",
               "t.conf:2: key 'cache_dir' is not allowed in [template a]");
}
END_TEST

START_TEST(test_err_bad_size)
{
    expect_err("[template a]\norigin = /a\nquota = 2X\n",
               "t.conf:3: bad size '2X' for key 'quota'");
    expect_err("[global]\ncache_max = -1\n",
               "t.conf:2: bad size '-1' for key 'cache_max'");
    expect_err("[global]\nmin_free = lots\n",
               "t.conf:2: bad size 'lots' for key 'min_free'");
    expect_err("[global]\ncache_max = 99999999999999999999\n",
               "t.conf:2: bad size '99999999999999999999' for key 'cache_max'");
}
END_TEST

START_TEST(test_err_block_size)
{
    expect_err("[global]\nblock_size = 3K\n",
               "t.conf:2: block_size '3K' must be a power of two from 4K to 16M");
    expect_err("[template a]\norigin = /a\nblock_size = 32M\n",
               "t.conf:3: block_size '32M' must be a power of two from 4K to 16M");
    expect_err("[global]\nblock_size = 2K\n",
               "t.conf:2: block_size '2K' must be a power of two from 4K to 16M");
}
END_TEST

START_TEST(test_err_duplicates)
{
    expect_err("[template a]\norigin = /a\n[template b]\norigin = /b\n"
               "[template a]\norigin = /c\n",
               "t.conf:5: duplicate template 'a' (first defined at line 1)");
    expect_err("[directory d]\norigin = /a\n\n[directory d]\n",
               "t.conf:4: duplicate directory 'd' (first defined at line 1)");
    expect_err("[template a]\norigin = /a\nquota = 1G\nquota = 2G\n",
               "t.conf:4: duplicate key 'quota'");
    expect_err("[template a]\norigin = /a\norigin = /b\n",
               "t.conf:3: duplicate key 'origin'");
    expect_err("[global]\nmode = 0444\nmode = 0440\n",
               "t.conf:3: duplicate key 'mode'");
}
END_TEST

START_TEST(test_err_names)
{
    expect_err("[template a/b]\n",
               "t.conf:1: invalid template name 'a/b': contains '/'");
    expect_err("[template ..]\n",
               "t.conf:1: invalid template name '..': '.' and '..' are not "
               "file names");
    expect_err("[directory .]\n",
               "t.conf:1: invalid directory name '.': '.' and '..' are not "
               "file names");
    expect_err("[global]\n[template a\x01x]\n",
               "t.conf:2: invalid template name 'a\\x01x': contains a control "
               "character");
    expect_err("[template a\x1b[31mb]\n",
               "t.conf:1: invalid template name 'a\\x1b[31mb': contains a "
               "control character");
}
END_TEST

START_TEST(test_err_long_name)
{
    char text[600], want[700];

    strcpy(text, "[template ");
    memset(text + 10, 'n', 256);
    strcpy(text + 266, "]\n");
    snprintf(want, sizeof want,
             "t.conf:1: invalid template name '%.256s': longer than 255 bytes",
             text + 10);
    expect_err(text, want);
    /* 255 bytes is still fine. */
    strcpy(text + 265, "]\norigin = /a\n");
    conf_free(parse_ok(text));
}
END_TEST

START_TEST(test_err_missing_origin)
{
    expect_err("[global]\n\n[template a]\nquota = 1G\n\n[template b]\n"
               "origin = /b\n",
               "t.conf:3: template 'a' has no origin");
    /* Also for the last section of the file. */
    expect_err("[template a]\norigin = /a\n# c\n[directory d]\nquota = 1G\n",
               "t.conf:4: directory 'd' has no origin");
}
END_TEST

START_TEST(test_err_key_outside_section)
{
    expect_err("# header comment\ncache_max = 1G\n[global]\n",
               "t.conf:2: key 'cache_max' before any section header");
}
END_TEST

START_TEST(test_err_syntax)
{
    expect_err("[global]\ncache_max 1G\n", "t.conf:2: expected 'key = value'");
    expect_err("[global]\n= 1G\n", "t.conf:2: expected 'key = value'");
    expect_err("[global]\nowner =   # nobody\n",
               "t.conf:2: missing value for key 'owner'");
}
END_TEST

START_TEST(test_err_origin)
{
    const char *want = "t.conf:2: origin must be an absolute path or an "
                       "http(s) URL";

    expect_err("[template a]\norigin = images/a.qcow2\n", want);
    expect_err("[template a]\norigin = ftp://h/a\n", want);
    expect_err("[template a]\norigin = http://\n", want);
    expect_err("[template a]\norigin = /a\nmirror = m/a\n",
               "t.conf:3: mirror must be an absolute path or an http(s) URL");
    conf_free(parse_ok("[template a]\norigin = HTTPS://H/a\n"));
}
END_TEST

START_TEST(test_err_mode)
{
    expect_err("[global]\nmode = 0644\n",
               "t.conf:2: mode 0644 would allow writes; the mount is read-only");
    expect_err("[global]\nmode = 0446\n",
               "t.conf:2: mode 0446 would allow writes; the mount is read-only");
    expect_err("[global]\nmode = 0498\n",
               "t.conf:2: bad mode '0498': expected octal permission bits "
               "such as 0444");
    expect_err("[global]\nmode = 4444\n",
               "t.conf:2: bad mode '4444': expected octal permission bits "
               "such as 0444");
}
END_TEST

START_TEST(test_err_min_free)
{
    expect_err("[global]\nmin_free = 120%\n",
               "t.conf:2: bad min_free '120%': a percentage must be from 0% "
               "to 100%");
    expect_err("[global]\nmin_free = 2.5%\n",
               "t.conf:2: bad min_free '2.5%': a percentage must be from 0% "
               "to 100%");
    expect_err("[global]\nmin_free = %\n",
               "t.conf:2: bad min_free '%': a percentage must be from 0% "
               "to 100%");
}
END_TEST

START_TEST(test_err_values)
{
    expect_err("[global]\ncache_dir = var/cache\n",
               "t.conf:2: cache_dir must be an absolute path");
    expect_err("[global]\ndata_direct_io = maybe\n",
               "t.conf:2: bad boolean 'maybe' for key 'data_direct_io' "
               "(use yes or no)");
    expect_err("[global]\ndirect_fill = 2\n",
               "t.conf:2: bad boolean '2' for key 'direct_fill' "
               "(use yes or no)");
    expect_err("[global]\nprewarm = later\n",
               "t.conf:2: bad boolean 'later' for key 'prewarm' "
               "(use yes or no)");
    expect_err("[global]\norigin_timeout = 0\n",
               "t.conf:2: origin_timeout must be greater than 0");
    expect_err("[global]\nconnect_timeout = 0s\n",
               "t.conf:2: connect_timeout must be greater than 0");
    expect_err("[global]\nrevalidate = soon\n",
               "t.conf:2: bad duration 'soon' for key 'revalidate'");
    expect_err("[global]\nmax_connections = 0\n",
               "t.conf:2: max_connections must be from 1 to 64");
    expect_err("[global]\nmax_connections = 65\n",
               "t.conf:2: max_connections must be from 1 to 64");
    expect_err("[global]\nmax_connections = four\n",
               "t.conf:2: bad number 'four' for key 'max_connections'");
}
END_TEST

/* origin_connections is the name, max_connections its old one; each
 * section takes one of them, and [global]'s either is the default.
 * warm_rate: [global] only, 0 or from 64K to 1T. */
START_TEST(test_connections_and_warm_rate)
{
    struct conf *c = parse_ok("[global]\norigin_connections = 6\n"
                              "warm_rate = 10M\n"
                              "[template a]\norigin = http://h/a\n"
                              "[template b]\norigin = http://h/b\n"
                              "max_connections = 3\n"
                              "[template d]\norigin = http://h/d\n"
                              "origin_connections = 2\n");
    ck_assert_uint_eq(c->net.max_connections, 6);
    ck_assert_uint_eq(find_src(c, "a")->net.max_connections, 6);
    ck_assert_uint_eq(find_src(c, "b")->net.max_connections, 3);
    ck_assert_uint_eq(find_src(c, "d")->net.max_connections, 2);
    ck_assert_uint_eq(c->warm_rate, 10u << 20);
    conf_free(c);
    c = parse_ok("[global]\nmax_connections = 5\nwarm_rate = 0\n"
                 "[template a]\norigin = /a\n");
    ck_assert_uint_eq(find_src(c, "a")->net.max_connections, 5);
    ck_assert_uint_eq(c->warm_rate, 0);
    conf_free(c);
    c = parse_ok("[template a]\norigin = /a\n");
    ck_assert_uint_eq(c->warm_rate, 0);
    ck_assert_int_eq(c->prewarm, 1);
    conf_free(c);
    c = parse_ok("[global]\nprewarm = no\n[template a]\norigin = /a\n");
    ck_assert_int_eq(c->prewarm, 0);
    conf_free(c);
    expect_err("[template a]\norigin = /a\nprewarm = no\n",
               "t.conf:3: key 'prewarm' is not allowed in [template a]");
    expect_err("[global]\norigin_connections = 2\nmax_connections = 3\n",
               "t.conf:3: max_connections is the old name of "
               "origin_connections: give only one of them");
    expect_err("[template a]\norigin = /a\nmax_connections = 3\n"
               "origin_connections = 2\n",
               "t.conf:4: max_connections is the old name of "
               "origin_connections: give only one of them");
    expect_err("[global]\norigin_connections = 0\n",
               "t.conf:2: origin_connections must be from 1 to 64");
    expect_err("[global]\nwarm_rate = 8E\n",
               "t.conf:2: warm_rate must be 0 (unlimited) or from 64K to 1T "
               "(bytes per second)");
    expect_err("[global]\nwarm_rate = 1K\n",
               "t.conf:2: warm_rate must be 0 (unlimited) or from 64K to 1T "
               "(bytes per second)");
    expect_err("[global]\nwarm_rate = fast\n",
               "t.conf:2: bad size 'fast' for key 'warm_rate'");
    expect_err("[template a]\norigin = /a\nwarm_rate = 1M\n",
               "t.conf:3: key 'warm_rate' is not allowed in [template a]");
}
END_TEST

/* kernel_readahead: [global] only, default 0, 0 or 4K multiples to 64M. */
START_TEST(test_kernel_readahead)
{
    struct conf *c = parse_ok("[template a]\norigin = /a\n");
    ck_assert_uint_eq(c->kernel_readahead, 0);
    conf_free(c);
    c = parse_ok("[global]\nkernel_readahead = 0\n[template a]\norigin = /a\n");
    ck_assert_uint_eq(c->kernel_readahead, 0);
    conf_free(c);
    c = parse_ok("[global]\nkernel_readahead = 256K\n"
                 "[template a]\norigin = /a\n");
    ck_assert_uint_eq(c->kernel_readahead, 256u << 10);
    conf_free(c);
    expect_err("[global]\nkernel_readahead = 5000\n",
               "t.conf:2: kernel_readahead must be 0 (the kernel's) or a "
               "multiple of 4K up to 64M");
    expect_err("[global]\nkernel_readahead = 128M\n",
               "t.conf:2: kernel_readahead must be 0 (the kernel's) or a "
               "multiple of 4K up to 64M");
    expect_err("[template a]\norigin = /a\nkernel_readahead = 1M\n",
               "t.conf:3: key 'kernel_readahead' is not allowed in "
               "[template a]");
}
END_TEST

START_TEST(test_err_nul_byte)
{
    static const char text[] = "[global]\ncache_max = 1G\nowner = a\0b\n";
    char path[] = "/tmp/check_conf.XXXXXX";
    struct conf *c;
    char err[256];
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, sizeof text - 1), (int)sizeof text - 1);
    close(fd);
    ck_assert_int_eq(conf_load(path, &c, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(c);
    unlink(path);
    ck_assert_msg(strstr(err, ":3: NUL byte in line") != NULL, "got %s", err);
    ck_assert_int_eq(strncmp(err, path, strlen(path)), 0);
}
END_TEST

START_TEST(test_load_file)
{
    char path[] = "/tmp/check_conf.XXXXXX";
    struct conf *c;
    char err[256] = "";
    FILE *f;
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    ck_assert_ptr_nonnull(f = fdopen(fd, "w"));
    fputs(full_conf, f);
    /* A line far longer than any fixed buffer. */
    fputs("[template long]\norigin = /l\npin = ", f);
    for (int i = 0; i < 20000; i++)
        fputs("0-4K,", f);
    fputs("qcow2-metadata\n", f);
    fclose(f);
    ck_assert_msg(conf_load(path, &c, err, sizeof err) == 0, "%s", err);
    unlink(path);
    ck_assert_str_eq(c->path, path);
    ck_assert_uint_eq(c->nsrc, 3);
    ck_assert_uint_eq(strlen(c->src[2].pin), 20000 * 5 + 14);
    conf_free(c);
}
END_TEST

START_TEST(test_load_missing)
{
    struct conf *c = (struct conf *)&c;
    char err[256];

    ck_assert_int_eq(conf_load("/nonexistent/imgcache.conf", &c, err,
                               sizeof err), -ENOENT);
    ck_assert_ptr_null(c);
    ck_assert_str_eq(err, "/nonexistent/imgcache.conf: cannot read: "
                          "No such file or directory");
    ck_assert_int_eq(conf_load("/", &c, err, sizeof err), -EISDIR);
    ck_assert_str_eq(err, "/: cannot read: Is a directory");
}
END_TEST

/* Messages are cut to the buffer, always terminated; no buffer is fine. */
START_TEST(test_err_truncation)
{
    struct conf *c;
    char err[12];

    memset(err, 'x', sizeof err);
    ck_assert_int_eq(conf_parse_string("[global]\nfoo = 1\n", "t.conf", &c,
                                       err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "t.conf:2: u");
    ck_assert_int_eq(conf_parse_string("[global]\nfoo = 1\n", "some-long-name",
                                       &c, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "some-long-n");
    ck_assert_int_eq(conf_parse_string("[global]\nfoo = 1\n", "t", &c, NULL, 0),
                     -EINVAL);
}
END_TEST

START_TEST(test_name_valid)
{
    char name[300];

    ck_assert_int_eq(conf_name_valid("ubuntu-24.04.qcow2"), 1);
    ck_assert_int_eq(conf_name_valid("with space"), 1);
    ck_assert_int_eq(conf_name_valid("..hidden"), 1);
    ck_assert_int_eq(conf_name_valid("a..b"), 1);
    ck_assert_int_eq(conf_name_valid("\xc3\xa9t\xc3\xa9"), 1); /* UTF-8 */
    ck_assert_int_eq(conf_name_valid(""), 0);
    ck_assert_int_eq(conf_name_valid("."), 0);
    ck_assert_int_eq(conf_name_valid(".."), 0);
    ck_assert_int_eq(conf_name_valid("a/b"), 0);
    ck_assert_int_eq(conf_name_valid("/"), 0);
    ck_assert_int_eq(conf_name_valid("a\nb"), 0);
    ck_assert_int_eq(conf_name_valid("a\tb"), 0);
    ck_assert_int_eq(conf_name_valid("a\x7f"), 0);
    ck_assert_int_eq(conf_name_valid(NULL), 0);
    memset(name, 'a', 255);
    name[255] = '\0';
    ck_assert_int_eq(conf_name_valid(name), 1);
    name[255] = 'a';
    name[256] = '\0';
    ck_assert_int_eq(conf_name_valid(name), 0);
}
END_TEST

START_TEST(test_origin_is_http)
{
    ck_assert_int_eq(conf_origin_is_http("http://h/a"), 1);
    ck_assert_int_eq(conf_origin_is_http("https://h/a"), 1);
    ck_assert_int_eq(conf_origin_is_http("HTTP://h/a"), 1);
    ck_assert_int_eq(conf_origin_is_http("HttpS://h/a"), 1);
    ck_assert_int_eq(conf_origin_is_http("/srv/http://"), 0);
    ck_assert_int_eq(conf_origin_is_http("ftp://h/a"), 0);
    ck_assert_int_eq(conf_origin_is_http("http:/h"), 0);
    ck_assert_int_eq(conf_origin_is_http(""), 0);
    ck_assert_int_eq(conf_origin_is_http(NULL), 0);
}
END_TEST

static Suite *conf_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *ok = tcase_create("valid"), *bad = tcase_create("errors");
    TCase *misc = tcase_create("misc");

    tcase_add_test(ok, test_full);
    tcase_add_test(ok, test_defaults);
    tcase_add_test(ok, test_empty);
    tcase_add_test(ok, test_global_after_template);
    tcase_add_test(ok, test_mirror_order);
    tcase_add_test(ok, test_comments_crlf);
    tcase_add_test(ok, test_sizes_and_durations);
    tcase_add_test(ok, test_empty_proxy);
    tcase_add_test(ok, test_proxy_list);
    tcase_add_test(ok, test_same_name_template_and_directory);
    tcase_add_test(ok, test_load_file);
    tcase_add_test(ok, test_follow_symlinks);
    tcase_add_test(ok, test_connections_and_warm_rate);
    tcase_add_test(ok, test_kernel_readahead);
    suite_add_tcase(s, ok);

    tcase_add_test(bad, test_err_unknown_section);
    tcase_add_test(bad, test_err_unknown_key);
    tcase_add_test(bad, test_err_bad_size);
    tcase_add_test(bad, test_err_block_size);
    tcase_add_test(bad, test_err_duplicates);
    tcase_add_test(bad, test_err_names);
    tcase_add_test(bad, test_err_long_name);
    tcase_add_test(bad, test_err_missing_origin);
    tcase_add_test(bad, test_err_key_outside_section);
    tcase_add_test(bad, test_err_syntax);
    tcase_add_test(bad, test_err_origin);
    tcase_add_test(bad, test_err_mode);
    tcase_add_test(bad, test_err_min_free);
    tcase_add_test(bad, test_err_values);
    tcase_add_test(bad, test_err_proxy);
    tcase_add_test(bad, test_err_nul_byte);
    tcase_add_test(bad, test_load_missing);
    tcase_add_test(bad, test_err_truncation);
    suite_add_tcase(s, bad);

    tcase_add_test(misc, test_name_valid);
    tcase_add_test(misc, test_origin_is_http);
    suite_add_tcase(s, misc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conf_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
