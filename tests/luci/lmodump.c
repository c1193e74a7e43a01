/*
 * Test helper for the LuCI tier (compiled at test time against luci-base's own lmo code from
 * ../shared/openwrt/<profile>/luci.tar.gz, never shipped): print every entry of the
 * catalog luci-base loads for LANG from DIR, the way its translations endpoint
 * (admin/translations/<lang>) walks it: lmo_load_catalog() + lmo_change_catalog() +
 * lmo_iterate(). One record per entry: "<key_id %08x> <length>\n<value bytes>\n".
 *
 * Build: cc -DLMO_HEADER='"template_lmo.h"' (21.02) or '"lib/lmo.h"' (24.10), with the
 * revision's lmo source and its lemon-generated plural_formula.c.
 */
#include <stdio.h>
#include LMO_HEADER

static void dump(uint32_t key, const char *val, int len, void *priv)
{
	(void)priv;
	printf("%08x %d\n", key, len);
	fwrite(val, 1, len, stdout);
	putchar('\n');
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s LANG DIR\n", argv[0]);
		return 2;
	}

	/* no catalog for the language (e.g. "en"): an empty dump, as LuCI serves {} */
	if (lmo_load_catalog(argv[1], argv[2]) != 0)
		return 0;

	lmo_change_catalog(argv[1]);
	lmo_iterate(dump, NULL);
	return 0;
}
