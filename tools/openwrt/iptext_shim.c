/*
 * mape-py test bed: stand-in for OpenWrt's libiptext.so / libiptext4.so / libiptext6.so.
 *
 * OpenWrt builds the iptables extensions statically into those three libraries, and
 * firewall3 calls their init_extensions(), init_extensions4() and init_extensions6() each
 * time it opens a table, right after fw3_xt_reset() has emptied libxtables' lists. Debian
 * ships the extensions as modules (<xtlibdir>/libxt_*.so, libipt_*.so, libip6t_*.so) whose
 * constructor registers them once, on dlopen. This shim gives fw3 the same entry points:
 *
 *   - first call: dlopen every module of its group (SHIM_PREFIX), which registers them;
 *   - later calls: call each module's lib<name>_init() again, as OpenWrt's static build
 *     does, after clearing the ->next links that the previous round left in the structs
 *     they registered (libxtables refuses a struct whose ->next is set: "already
 *     registered"). fw3_xt_reset() has just dropped the lists, so nothing live points there.
 *     A module registers only the structs of the current family, so what each round adds
 *     is remembered too (IPv4-only structs first show up in an IPv4 round).
 *
 * The same source is built three times (-DSHIM_PREFIX="libxt_" -DSHIM_ENTRY=init_extensions,
 * "libipt_"/init_extensions4, "libip6t_"/init_extensions6); each library keeps its own state.
 * Our own code, written for the test bed; not part of mape-py's runtime.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xtables.h>

#ifndef SHIM_PREFIX
#error "define SHIM_PREFIX, e.g. -DSHIM_PREFIX=\"libxt_\""
#endif
#ifndef SHIM_ENTRY
#error "define SHIM_ENTRY, e.g. -DSHIM_ENTRY=init_extensions"
#endif
#ifndef SHIM_XTLIBDIR
#define SHIM_XTLIBDIR "/usr/lib/x86_64-linux-gnu/xtables"
#endif

extern struct xtables_match *xtables_pending_matches;
extern struct xtables_target *xtables_pending_targets;

struct ptrs {
	void **v;
	size_t n, cap;
};

static struct ptrs inits;     /* lib<name>_init of each module of our group */
static struct ptrs matches;   /* structs our modules registered */
static struct ptrs targets;
static int loaded;

static int ptrs_has(const struct ptrs *p, const void *x)
{
	size_t i;

	for (i = 0; i < p->n; i++)
		if (p->v[i] == x)
			return 1;
	return 0;
}

static void ptrs_add(struct ptrs *p, void *x)
{
	void **nv;

	if (ptrs_has(p, x))
		return;
	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		nv = realloc(p->v, p->cap * sizeof(*nv));
		if (!nv) {
			perror("iptext shim");
			exit(1);
		}
		p->v = nv;
	}
	p->v[p->n++] = x;
}

/* What sits on the pending lists when our entry point starts was registered by the other
 * groups this round; whatever is new after our calls is ours. */
static struct ptrs foreign;

static void snapshot(void)
{
	struct xtables_match *m;
	struct xtables_target *t;

	foreign.n = 0;
	for (m = xtables_pending_matches; m; m = m->next)
		ptrs_add(&foreign, m);
	for (t = xtables_pending_targets; t; t = t->next)
		ptrs_add(&foreign, t);
}

static void collect(void)
{
	struct xtables_match *m;
	struct xtables_target *t;

	for (m = xtables_pending_matches; m; m = m->next)
		if (!ptrs_has(&foreign, m))
			ptrs_add(&matches, m);
	for (t = xtables_pending_targets; t; t = t->next)
		if (!ptrs_has(&foreign, t))
			ptrs_add(&targets, t);
}

static void load_dir(const char *dir)
{
	size_t plen = strlen(SHIM_PREFIX);
	struct dirent **ents;
	char path[4096], sym[256];
	struct stat st;
	void *h;
	void (*fn)(void);
	int i, n, was_loaded;

	n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0)
		return;
	for (i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		size_t len = strlen(name);

		if (strncmp(name, SHIM_PREFIX, plen) || len < plen + 4 ||
		    strcmp(name + len - 3, ".so"))
			goto next;
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		/* aliases (libxt_SNAT.so -> libxt_NAT.so) come with their target */
		if (lstat(path, &st) || !S_ISREG(st.st_mode))
			goto next;
		snprintf(sym, sizeof(sym), "%.*s_init", (int)(len - 3), name);
		was_loaded = dlopen(path, RTLD_NOW | RTLD_NOLOAD) != NULL;
		h = dlopen(path, RTLD_NOW);
		if (!h) {
			fprintf(stderr, "iptext shim: %s\n", dlerror());
			goto next;
		}
		fn = (void (*)(void))dlsym(h, sym);
		if (!fn)
			goto next;
		ptrs_add(&inits, (void *)fn);
		if (was_loaded)  /* its constructor ran before us: register now */
			fn();
next:
		free(ents[i]);
	}
	free(ents);
}

__attribute__((visibility("default"))) void SHIM_ENTRY(void);

void SHIM_ENTRY(void)
{
	const char *env = getenv("XTABLES_LIBDIR");
	char *dirs, *dir, *save = NULL;
	size_t i;

	snapshot();
	if (!loaded) {
		loaded = 1;
		dirs = strdup(env && *env ? env : SHIM_XTLIBDIR);
		if (!dirs)
			return;
		for (dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save))
			load_dir(dir);
		free(dirs);
		collect();
		return;
	}

	/* fw3_xt_reset() emptied the lists, so no live list runs through these */
	for (i = 0; i < matches.n; i++)
		((struct xtables_match *)matches.v[i])->next = NULL;
	for (i = 0; i < targets.n; i++)
		((struct xtables_target *)targets.v[i])->next = NULL;

	for (i = 0; i < inits.n; i++)
		((void (*)(void))inits.v[i])();
	collect();
}
