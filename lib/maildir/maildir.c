/*
 * maildir.c: the Maildir store on disk -- creating maildirs and Maildir++
 * folders, delivering messages durably, and parsing message file names.
 *
 * Implements the Maildir delivery protocol (D. J. Bernstein,
 * https://cr.yp.to/proto/maildir.html): a unique file is written in tmp/,
 * then link()ed into new/. petrel's contract (SPEC section 4, "250 after
 * DATA means the message is on stable storage") adds the fsync steps
 * qmail-local and Dovecot's maildir-save.c use: the file is fsync'd before
 * the link and new/ is fsync'd after it; only then do we report success.
 * Maildir++ folders follow Courier's layout (maildir/.Folder.Sub with an
 * empty "maildirfolder" file).
 *
 * Trust: paths (maildir, folder) come from the administrator or the SQL
 * directory and are trusted to name the intended place; folder names come
 * from IMAP clients and are validated by maildir_folder_name_valid()
 * before they touch the file system. File names handed to
 * maildir_name_parse() are untrusted bytes (they come from a directory
 * other software or users can write to) and are fuzzed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/magic.h>
#include <sys/random.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include "lib/base/alloc.h"
#include "lib/base/err.h"
#include "lib/base/fdio.h"
#include "lib/base/limits.h"
#include "lib/base/log.h"
#include "lib/base/str.h"
#include "lib/maildir/maildir.h"

/* How often a colliding unique name (EEXIST) is retried with a fresh
 * one before giving up. A collision needs the same pid, microsecond,
 * counter and 32 random bits: one retry is already paranoia. */
#define UNIQUE_RETRIES 5

struct maildir_tmp {
	char *maildir;
	char *base;		/* unique name, also the name in tmp/ */
	char *tmp_path;
	int fd;
	uint64_t size;
	uint64_t vsize;
	bool last_cr;		/* last byte written was '\r' */
	bool held_cr;		/* maildir_tmp_write_lf: a CR not written yet */
	bool failed;		/* a write failed: commit must refuse */
	bool set_mtime;		/* maildir_tmp_set_mtime: mtime to set */
	struct timespec mtime;
};

static atomic_uint unique_counter;

/* path without trailing slashes ("/" stays "/"). malloc'd. */
static char *
path_trim(const char *path)
{
	size_t len = strlen(path);

	while (len > 1 && path[len - 1] == '/')
		len--;
	return xstrndup(path, len);
}

/*
 * Group commit of directory fsyncs. Deliveries running at once in the job
 * threads into the same new/ all need that directory synced after their
 * link(); one fsync started after a link covers it. Each caller takes a
 * ticket after its link; whoever finds no fsync running starts one that
 * covers every ticket issued so far, the others wait for a covering one.
 * So N concurrent deliveries cost about two directory fsyncs, not N.
 */
#define DSYNC_SLOTS 32

static struct dsync {
	char *dir;
	uint64_t issued, synced;	/* tickets */
	unsigned users;
	bool busy;
} dsyncs[DSYNC_SLOTS];
static pthread_mutex_t dsync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dsync_cv = PTHREAD_COND_INITIALIZER;

static struct dsync *
dsync_slot(const char *dir)
{
	struct dsync *free_slot = NULL;

	for (size_t i = 0; i < DSYNC_SLOTS; i++) {
		if (dsyncs[i].dir != NULL && strcmp(dsyncs[i].dir, dir) == 0)
			return &dsyncs[i];
		if (free_slot == NULL && dsyncs[i].users == 0)
			free_slot = &dsyncs[i];
	}
	if (free_slot != NULL) {
		free(free_slot->dir);
		free_slot->dir = xstrdup(dir);
		free_slot->issued = free_slot->synced = 0;
		free_slot->busy = false;
	}
	return free_slot;
}

static int
dsync_dir(const char *dir, const char **error_r)
{
	struct dsync *d;
	uint64_t mine;
	int ret = 0;

	pthread_mutex_lock(&dsync_mu);
	d = dsync_slot(dir);
	if (d == NULL) {
		/* more directories in flight than slots: no sharing */
		pthread_mutex_unlock(&dsync_mu);
		return fsync_dir(dir, error_r);
	}
	d->users++;
	mine = ++d->issued;
	while (d->synced < mine) {
		if (!d->busy) {
			uint64_t covers = d->issued;

			d->busy = true;
			pthread_mutex_unlock(&dsync_mu);
			ret = fsync_dir(dir, error_r);
			pthread_mutex_lock(&dsync_mu);
			d->busy = false;
			if (ret == 0 && covers > d->synced)
				d->synced = covers;
			pthread_cond_broadcast(&dsync_cv);
			if (ret < 0)
				break;
		} else {
			pthread_cond_wait(&dsync_cv, &dsync_mu);
		}
	}
	d->users--;
	pthread_mutex_unlock(&dsync_mu);
	return ret;
}

/* lstat(path): a directory (0), missing (1), else -1 with the reason;
 * with !strict only a symbolic link is refused (another file type fails
 * where it is used). */
static int
dir_nolink(const char *path, bool strict, const char **error_r)
{
	struct stat st;

	if (lstat(path, &st) == -1) {
		if (errno == ENOENT)
			return 1;
		return err_fail(error_r, errno, "lstat(%s) failed: %s", path,
		    strerror(errno));
	}
	if (S_ISLNK(st.st_mode))
		return err_fail(error_r, ERR_OTHER,
		    "%s is a symbolic link: refused", path);
	if (strict && !S_ISDIR(st.st_mode))
		return err_fail(error_r, ERR_OTHER,
		    "%s exists and is not a directory", path);
	return 0;
}

int
maildir_check_dirs(const char *maildir, const char **error_r)
{
	static const char *const subdirs[] = { "cur", "new", "tmp" };
	char *root = path_trim(maildir);
	int r = dir_nolink(root, false, error_r);

	for (size_t i = 0; r >= 0 && i < 3; i++) {
		char *sub = xasprintf("%s/%s", root, subdirs[i]);

		r = dir_nolink(sub, false, error_r);
		free(sub);
	}
	free(root);
	return r < 0 ? -1 : 0;
}

int
maildir_check_under(const char *root, const char *maildir,
    const char **error_r)
{
	char *r = root != NULL ? path_trim(root) : NULL;
	char *copy = path_trim(maildir);
	size_t rlen = r != NULL ? strlen(r) : 0;
	int ret = 0;

	if (r != NULL && rlen > 0 && strncmp(copy, r, rlen) == 0 &&
	    copy[rlen] == '/') {
		for (char *p = copy + rlen + 1; *p != '\0' && ret >= 0; p++) {
			if (*p != '/' || p[-1] == '/')
				continue;
			*p = '\0';
			ret = dir_nolink(copy, false, error_r);
			*p = '/';
		}
	}
	if (ret >= 0)
		ret = maildir_check_dirs(copy, error_r);
	free(copy);
	free(r);
	return ret < 0 ? -1 : 0;
}

/* mkdir one directory; an existing directory is fine (through a symbolic
 * link only if follow: the levels above a maildir). Returns 1 if it made
 * the directory, 0 if it was there, -1 on error. */
static int
mkdir_one(const char *path, bool follow, const char **error_r)
{
	struct stat st;

	if (mkdir(path, 0700) == 0)
		return 1;
	if (errno != EEXIST)
		return err_fail(error_r, errno, "mkdir(%s) failed: %s", path,
		    strerror(errno));
	if (!follow)
		return dir_nolink(path, true, error_r) < 0 ? -1 : 0;
	if (stat(path, &st) == -1)
		return err_fail(error_r, errno, "stat(%s) failed: %s", path,
		    strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return err_fail(error_r, ERR_OTHER,
		    "%s exists and is not a directory",
		    path);
	return 0;
}

/* mkdir -p: every missing level is created with mode 0700. *depth_r is
 * the number of levels (counted up from path itself) that it made. */
static int
mkdir_parents(const char *path, size_t *depth_r, const char **error_r)
{
	char *copy = path_trim(path);
	char *p;
	size_t levels = 0, made_at = 0;
	int ret = 0;

	for (p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		if (p[-1] == '/')
			continue;	/* "a//b" */
		*p = '\0';
		ret = mkdir_one(copy, true, error_r);
		*p = '/';
		if (ret < 0)
			break;
		levels++;
		if (ret == 1 && made_at == 0)
			made_at = levels;
	}
	if (ret >= 0) {
		ret = mkdir_one(copy, false, error_r);
		levels++;
		if (ret == 1 && made_at == 0)
			made_at = levels;
	}
	free(copy);
	*depth_r = made_at == 0 ? 0 : levels - made_at + 1;
	return ret < 0 ? -1 : 0;
}

/*
 * Make new directories durable: a power loss must not take away a folder
 * (and the mail acknowledged into it) that a client saw created. Each
 * directory made is an entry in its parent, so path itself (for the cur/,
 * new/ and tmp/ made in it) and the parent of every level made are
 * fsync'd, from the bottom up.
 */
static int
sync_made(const char *path, size_t depth, bool subdirs_made,
	  const char **error_r)
{
	char *copy = path_trim(path);
	char *slash;
	int ret = 0;

	if (subdirs_made || depth > 0)
		ret = fsync_dir(copy, error_r);
	while (ret == 0 && depth-- > 0) {
		slash = strrchr(copy, '/');
		if (slash == NULL)
			break;
		if (slash == copy)
			slash[1] = '\0';
		else
			*slash = '\0';
		ret = fsync_dir(copy, error_r);
		if (slash == copy)
			break;
	}
	free(copy);
	return ret;
}

int
maildir_make(const char *path, const char **error_r)
{
	static const char *const subdirs[] = { "cur", "new", "tmp" };
	char *root, *sub;
	size_t i, depth;
	bool made = false;
	int ret;

	if (path == NULL || *path == '\0')
		return err_fail(error_r, ERR_OTHER, "empty maildir path");
	if (mkdir_parents(path, &depth, error_r) < 0)
		return -1;
	root = path_trim(path);
	ret = 0;
	for (i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		sub = xasprintf("%s/%s", root, subdirs[i]);
		ret = mkdir_one(sub, false, error_r);
		free(sub);
		if (ret < 0)
			break;
		if (ret == 1)
			made = true;
	}
	if (ret >= 0)
		ret = sync_made(root, depth, made, error_r);
	free(root);
	return ret < 0 ? -1 : 0;
}

bool
maildir_folder_name_valid(const char *folder)
{
	size_t len, level;
	const unsigned char *p;

	if (folder == NULL || *folder == '\0')
		return false;
	len = strlen(folder);
	/* ".<folder>" is one directory entry */
	if (len + 1 > NAME_MAX)
		return false;
	if (folder[0] == '.' || folder[len - 1] == '.')
		return false;
	if (strstr(folder, "..") != NULL)
		return false;
	if (strcasecmp(folder, "INBOX") == 0)
		return false;
	level = 0;
	for (p = (const unsigned char *)folder; *p != '\0'; p++) {
		if (*p == '/' || *p < 0x20 || *p == 0x7f)
			return false;
		if (*p == '.') {
			level = 0;
			continue;
		}
		if (++level > MAILDIR_FOLDER_MAX)
			return false;
	}
	return true;
}

char *
maildir_folder_path(const char *maildir, const char *folder)
{
	char *root, *path;

	if (folder != NULL && strcasecmp(folder, "INBOX") == 0)
		return path_trim(maildir);
	if (!maildir_folder_name_valid(folder))
		return NULL;
	root = path_trim(maildir);
	path = xasprintf("%s/.%s", root, folder);
	free(root);
	return path;
}

int
maildir_make_folder(const char *maildir, const char *folder,
		    const char **error_r)
{
	char *path, *marker;
	int fd, ret;

	if (folder != NULL && strcasecmp(folder, "INBOX") == 0)
		return err_fail(error_r, ERR_OTHER,
		    "INBOX is the maildir itself, "
		    "not a folder");
	if (!maildir_folder_name_valid(folder))
		return err_fail(error_r, ERR_OTHER,
		    "invalid folder name \"%s\"",
		    folder == NULL ? "" : folder);
	if (maildir_make(maildir, error_r) < 0)
		return -1;
	path = maildir_folder_path(maildir, folder);
	ret = maildir_make(path, error_r);
	if (ret == 0) {
		marker = xasprintf("%s/maildirfolder", path);
		fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
		    0600);
		if (fd == -1)
			ret = err_fail(error_r, errno, "open(%s) failed: %s",
			    marker, strerror(errno));
		else
			close(fd);
		free(marker);
	}
	free(path);
	return ret;
}

/* gethostname() with '/' and ':' escaped as Courier and Dovecot do,
 * since they would break the file name, and ',' too, which would end the
 * base name for maildir_name_parse(). */
static void
append_hostname(str_t *s)
{
	char host[HOST_NAME_MAX + 1];
	const char *p;

	if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
		memcpy(host, "localhost", sizeof("localhost"));
	host[sizeof(host) - 1] = '\0';
	for (p = host; *p != '\0'; p++) {
		if (*p == '/')
			str_append(s, "\\057");
		else if (*p == ':')
			str_append(s, "\\072");
		else if (*p == ',')
			str_append(s, "\\054");	/* would end the base */
		else
			str_append_c(s, *p);
	}
}

char *
maildir_unique_name(void)
{
	struct timeval tv;
	uint32_t rnd;
	unsigned int n;
	str_t s = STR_INIT;

	gettimeofday(&tv, NULL);
	n = atomic_fetch_add(&unique_counter, 1) + 1;
	if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd)) {
		/* no entropy yet (early boot): pid, time and counter still
		 * make the name unique; this only mixes. */
		rnd = (uint32_t)tv.tv_usec * 2654435761u ^
		    (uint32_t)getpid() ^ n;
	}
	str_printf(&s, "%lld.M%06ldP%ldQ%uR%08" PRIx32 ".",
	    (long long)tv.tv_sec, (long)tv.tv_usec, (long)getpid(), n, rnd);
	append_hostname(&s);
	return str_steal(&s);
}

static void
tmp_free(struct maildir_tmp **tmpp)
{
	struct maildir_tmp *tmp = *tmpp;

	if (tmp->fd != -1)
		close(tmp->fd);
	free(tmp->maildir);
	free(tmp->base);
	free(tmp->tmp_path);
	free(tmp);
	*tmpp = NULL;
}

int
maildir_tmp_open(const char *maildir, struct maildir_tmp **tmp_r,
		 const char **error_r)
{
	struct maildir_tmp *tmp;
	bool made = false;
	int tries;

	*tmp_r = NULL;
	if (maildir == NULL || *maildir == '\0')
		return err_fail(error_r, ERR_OTHER, "empty maildir path");
	/* tmp/ and new/ are written: never through a symbolic link */
	if (maildir_check_dirs(maildir, error_r) < 0)
		return -1;
	tmp = xmalloc(sizeof(*tmp));
	tmp->fd = -1;
	tmp->maildir = path_trim(maildir);
	for (tries = 0; tries < UNIQUE_RETRIES; tries++) {
		free(tmp->base);
		free(tmp->tmp_path);
		tmp->base = maildir_unique_name();
		tmp->tmp_path = xasprintf("%s/tmp/%s", tmp->maildir, tmp->base);
		tmp->fd = open(tmp->tmp_path, O_RDWR | O_CREAT | O_EXCL |
		    O_CLOEXEC | O_NOFOLLOW, 0600);
		if (tmp->fd != -1) {
			*tmp_r = tmp;
			return 0;
		}
		if (errno == ENOENT && !made) {
			/* first delivery to a new user */
			made = true;
			if (maildir_make(tmp->maildir, error_r) < 0)
				break;
			tries--;
			continue;
		}
		if (errno != EEXIST) {
			err_fail(error_r, errno, "open(%s) failed: %s",
			    tmp->tmp_path, strerror(errno));
			break;
		}
	}
	if (tries == UNIQUE_RETRIES)
		err_fail(error_r, ERR_OTHER,
		    "cannot create a unique file in %s/tmp",
		    tmp->maildir);
	tmp_free(&tmp);
	return -1;
}

int
maildir_tmp_write(struct maildir_tmp *tmp, const void *data, size_t len,
		  const char **error_r)
{
	const unsigned char *p = data;
	size_t i, done;
	ssize_t n;

	if (tmp->failed)
		return err_fail(error_r, ERR_OTHER,
		    "write to %s after an earlier "
		    "failure", tmp->tmp_path);
	/* vsize: every LF not preceded by CR would become CRLF */
	for (i = 0; i < len; i++) {
		if (p[i] == '\n' && !(i > 0 ? p[i - 1] == '\r' : tmp->last_cr))
			tmp->vsize++;
	}
	if (len > 0)
		tmp->last_cr = p[len - 1] == '\r';

	for (done = 0; done < len; ) {
		n = write(tmp->fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			tmp->failed = true;
			return err_fail(error_r, errno, "write(%s) failed: %s",
			    tmp->tmp_path, strerror(errno));
		}
		if (n == 0) {
			tmp->failed = true;
			return err_fail(error_r, ERR_OTHER,
			    "write(%s) wrote nothing",
			    tmp->tmp_path);
		}
		done += (size_t)n;
	}
	tmp->size += len;
	tmp->vsize += len;
	return 0;
}

int
maildir_tmp_write_lf(struct maildir_tmp *tmp, const void *data, size_t len,
		     const char **error_r)
{
	const char *p = data, *end = p + len, *cr;

	if (len == 0)
		return 0;
	if (tmp->held_cr) {
		/* the CR that ended the last call: dropped before LF */
		tmp->held_cr = false;
		if (*p != '\n' && maildir_tmp_write(tmp, "\r", 1, error_r) < 0)
			return -1;
	}
	while (p < end) {
		cr = memchr(p, '\r', (size_t)(end - p));
		if (cr == NULL)
			return maildir_tmp_write(tmp, p, (size_t)(end - p),
			    error_r);
		if (cr + 1 == end) {
			tmp->held_cr = true;
			return maildir_tmp_write(tmp, p, (size_t)(cr - p),
			    error_r);
		}
		/* up to the CR; a CR before LF is dropped, a bare one
		 * kept */
		if (maildir_tmp_write(tmp, p, (size_t)(cr - p) +
		    (cr[1] == '\n' ? 0 : 1), error_r) < 0)
			return -1;
		p = cr + 1;
	}
	return 0;
}

void
maildir_tmp_set_mtime(struct maildir_tmp *tmp, time_t sec, long nsec)
{
	tmp->set_mtime = true;
	tmp->mtime.tv_sec = sec;
	tmp->mtime.tv_nsec = nsec;
}

int
maildir_tmp_fd(const struct maildir_tmp *tmp)
{
	return tmp->fd;
}

uint64_t
maildir_tmp_size(const struct maildir_tmp *tmp)
{
	return tmp->size + (tmp->held_cr ? 1 : 0);
}

uint64_t
maildir_tmp_vsize(const struct maildir_tmp *tmp)
{
	return tmp->vsize + (tmp->held_cr ? 1 : 0);
}

void
maildir_tmp_abort(struct maildir_tmp **tmpp)
{
	if (tmpp == NULL || *tmpp == NULL)
		return;
	if ((*tmpp)->fd != -1) {
		close((*tmpp)->fd);
		(*tmpp)->fd = -1;
	}
	if (unlink((*tmpp)->tmp_path) == -1 && errno != ENOENT)
		log_warn("unlink(%s) failed: %s", (*tmpp)->tmp_path,
		    strerror(errno));
	tmp_free(tmpp);
}

static int copy_into(const char *src, const char *maildir,
    const char *flags, char **path_r, const char **error_r);

/*
 * Copies made durable together (maildir.h): the directories to fsync,
 * each once, and the names linked, removed when the batch ends unsynced.
 */
#define BATCH_OPEN_MAX 64

struct maildir_batch {
	char **dirs;
	size_t ndirs;
	char **paths;
	size_t npaths;
	/* written copies whose writeback has started, not yet waited for
	 * nor linked (at most BATCH_OPEN_MAX open files) */
	struct batch_pending {
		struct maildir_tmp *tmp;
		char *flags;
	} pending[BATCH_OPEN_MAX];
	size_t npending;
	bool flushing;
};


struct maildir_batch *
maildir_batch_new(void)
{
	return xcalloc(1, sizeof(struct maildir_batch));
}

static void
batch_add(struct maildir_batch *b, const char *dir, const char *path)
{
	size_t i;

	/* newest first: copies into one directory usually come together */
	for (i = b->ndirs; i > 0; i--)
		if (strcmp(b->dirs[i - 1], dir) == 0)
			break;
	if (i == 0) {
		b->dirs = xrealloc(b->dirs, (b->ndirs + 1) * sizeof(char *));
		b->dirs[b->ndirs++] = xstrdup(dir);
	}
	b->paths = xrealloc(b->paths, (b->npaths + 1) * sizeof(char *));
	b->paths[b->npaths++] = xstrdup(path);
}

static void
batch_clear(struct maildir_batch *b, bool unlink_paths)
{
	for (size_t i = 0; i < b->npending; i++) {
		maildir_tmp_abort(&b->pending[i].tmp);
		free(b->pending[i].flags);
	}
	b->npending = 0;
	for (size_t i = 0; i < b->npaths; i++) {
		if (unlink_paths && unlink(b->paths[i]) == -1 &&
		    errno != ENOENT)
			log_warn("unlink(%s) failed: %s", b->paths[i],
			    strerror(errno));
		free(b->paths[i]);
	}
	for (size_t i = 0; i < b->ndirs; i++)
		free(b->dirs[i]);
	free(b->paths);
	free(b->dirs);
	b->paths = b->dirs = NULL;
	b->npaths = b->ndirs = 0;
}

size_t
maildir_batch_dirs(const struct maildir_batch *b)
{
	return b != NULL ? b->ndirs : 0;
}

static int tmp_commit(struct maildir_tmp **tmpp, const char *maildir,
    const char *flags, struct maildir_batch *batch, char **path_r,
    const char **error_r);

/*
 * The fsyncs of a batch's directories. Where each is a write of its own
 * (ext4 without a journal: the directory's blocks, then a cache flush)
 * 1,000 of them one after the other cost 1,000 device round trips; run
 * at once from a few threads they overlap, and the block layer merges
 * their cache flushes. With a journal the first commits every link and
 * the others return at once, in whatever thread.
 */
#define BATCH_SYNC_THREADS 16

struct sync_run {
	struct maildir_batch *b;
	atomic_size_t next;
	pthread_mutex_t mu;
	bool failed;
	int code;		/* the first failure's */
	char msg[ERR_MSG_MAX];
};

static void *
sync_thread(void *arg)
{
	struct sync_run *r = arg;
	const char *err;
	size_t i;

	while ((i = atomic_fetch_add(&r->next, 1)) < r->b->ndirs) {
		if (dsync_dir(r->b->dirs[i], &err) == 0)
			continue;
		pthread_mutex_lock(&r->mu);
		if (!r->failed) {
			r->failed = true;
			r->code = err_last_code();
			snprintf(r->msg, sizeof(r->msg), "%s", err);
		}
		pthread_mutex_unlock(&r->mu);
		break;
	}
	return NULL;
}

static int
sync_dirs(struct maildir_batch *b, const char **error_r)
{
	pthread_t th[BATCH_SYNC_THREADS];
	struct sync_run r = { .b = b };
	size_t n = b->ndirs / 8, started = 0;

	if (n < 2) {
		for (size_t i = 0; i < b->ndirs; i++)
			if (dsync_dir(b->dirs[i], error_r) < 0)
				return -1;
		return 0;
	}
	if (n > BATCH_SYNC_THREADS)
		n = BATCH_SYNC_THREADS;
	atomic_init(&r.next, 0);
	pthread_mutex_init(&r.mu, NULL);
	for (size_t i = 0; i < n; i++)
		if (pthread_create(&th[started], NULL, sync_thread, &r) == 0)
			started++;
	sync_thread(&r);	/* this thread too (all of it if none started) */
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&r.mu);
	if (r.failed)
		return err_fail(error_r, r.code, "%s", r.msg);
	return 0;
}

/* Wait for the data of each pending copy (its writeback started when it
 * was committed, so the waits overlap) and link it into its directory. */
static int
batch_flush(struct maildir_batch *b, const char **error_r)
{
	size_t i;
	int ret = 0;

	b->flushing = true;
	for (i = 0; i < b->npending && ret == 0; i++) {
		ret = tmp_commit(&b->pending[i].tmp, NULL, b->pending[i].flags,
		    b, NULL, error_r);
		free(b->pending[i].flags);
	}
	for (; i < b->npending; i++) {
		maildir_tmp_abort(&b->pending[i].tmp);
		free(b->pending[i].flags);
	}
	b->npending = 0;
	b->flushing = false;
	return ret;
}

int
maildir_batch_sync(struct maildir_batch *b, const char **error_r)
{
	if (batch_flush(b, error_r) < 0) {
		batch_clear(b, true);
		return -1;
	}
	if (sync_dirs(b, error_r) < 0) {
		/* nothing of the batch is acknowledged: remove it all, so
		 * that the client's retry makes no second copy */
		batch_clear(b, true);
		return -1;
	}
	batch_clear(b, false);
	return 0;
}

void
maildir_batch_free(struct maildir_batch **bp)
{
	if (*bp == NULL)
		return;
	batch_clear(*bp, true);
	free(*bp);
	*bp = NULL;
}

/* link() not possible on this file system (or across them)? */
static bool
link_unsupported(int err)
{
	return err == EXDEV || err == EPERM || err == EMLINK ||
	    err == ENOSYS || err == EOPNOTSUPP;
}

/*
 * Give src a second name <maildir>/<new|cur>/<unique>,S=,W=[,extra][:2,flags]
 * and fsync that directory. With allow_rename, a file system without
 * hard links gets rename() instead (src then disappears; only for our
 * own tmp files). Returns 0 ok, -1 error (nothing created), -2 link not
 * possible here (errno in *errno_r; the caller copies).
 */
static int
link_unique(const char *src, const char *maildir, uint64_t size,
	    bool has_vsize, uint64_t vsize, const char *flags,
	    const char *extra, bool allow_rename,
	    struct maildir_batch *batch, char **path_r, int *errno_r,
	    const char **error_r)
{
	char nflags[MAILDIR_FLAGS_MAX + 1];
	char *base, *dest, *dir;
	str_t s = STR_INIT;
	bool made = false, renamed;
	int tries, err;

	if (flags != NULL &&
	    maildir_flags_normalize(flags, strlen(flags), nflags) < 0)
		return err_fail(error_r, ERR_OTHER,
		    "invalid maildir flags \"%s\"",
		    flags);
	dir = xasprintf("%s/%s", maildir, flags == NULL ? "new" : "cur");
	for (tries = 0; tries < UNIQUE_RETRIES; tries++) {
		base = maildir_unique_name();
		str_truncate(&s, 0);
		str_printf(&s, "%s/%s,S=%" PRIu64, dir, base, size);
		if (has_vsize)
			str_printf(&s, ",W=%" PRIu64, vsize);
		if (extra != NULL)
			str_printf(&s, ",%s", extra);
		if (flags != NULL)
			str_printf(&s, ":2,%s", nflags);
		free(base);
		dest = xstrdup(str_c(&s));
		renamed = false;
		if (link(src, dest) == 0)
			goto linked;
		err = errno;
		if (allow_rename && link_unsupported(err) && err != EXDEV) {
			if (rename(src, dest) == 0) {
				renamed = true;
				goto linked;
			}
			err = errno;
		}
		if (err == ENOENT && !made) {
			made = true;
			free(dest);
			if (maildir_make(maildir, error_r) < 0)
				break;
			tries--;
			continue;
		}
		if (err != EEXIST) {
			if (link_unsupported(err)) {
				*errno_r = err;
				free(dest);
				free(dir);
				str_free(&s);
				return -2;
			}
			err_fail(error_r, err, "link(%s, %s) failed: %s", src,
			    dest, strerror(err));
			free(dest);
			break;
		}
		free(dest);
		continue;
linked:
		if (batch != NULL) {
			/* the directory is fsync'd by maildir_batch_sync() */
			batch_add(batch, dir, dest);
		} else if (dsync_dir(dir, error_r) < 0) {
			if (renamed) {
				/* put it back so the caller can clean up */
				if (rename(dest, src) == -1)
					(void)unlink(dest);
			} else {
				(void)unlink(dest);
			}
			free(dest);
			break;
		}
		if (path_r != NULL)
			*path_r = dest;
		else
			free(dest);
		free(dir);
		str_free(&s);
		return 0;
	}
	if (tries == UNIQUE_RETRIES)
		err_fail(error_r, ERR_OTHER,
		    "cannot create a unique file in %s", dir);
	free(dir);
	str_free(&s);
	return -1;
}

/*
 * Make a new file's bytes durable before it is linked into new/ or cur/,
 * whose directory is fsync'd right after the link (link_unique).
 *
 * On ext4 and XFS the fsync of the directory commits the file system's
 * journal up to the link, and so every metadata change made before it:
 * the file's block allocation and size included. So there the file needs
 * only its data written and waited for (sync_file_range, which also
 * allocates its blocks), not a journal commit of its own: the directory's
 * commit, whose cache flush also covers the data already written, makes
 * file and link durable together. That is one journal commit per
 * delivery instead of two, shared with every delivery running at the same
 * time (dsync_dir). A crash before that commit loses both the link and
 * the allocation, never one without the other; a crash after it finds the
 * whole file. Every other file system gets a full fsync here, and so
 * does an ext4 without a journal (mkfs -O ^has_journal), whose directory
 * fsync writes the directory alone: ext4 counts as journaled only when
 * the kernel lists its journal in /proc/fs/jbd2 (as "<device>-<inode>").
 */

/* Whether the ext4 file system on dev has a journal (remembered per
 * device; false when it cannot be told). */
static bool
ext4_journaled(dev_t dev)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static struct { dev_t dev; bool journaled; } known[8];
	static size_t nknown;
	char link[64], target[PATH_MAX], prefix[NAME_MAX + 2];
	const char *name;
	bool journaled = false;
	DIR *d;
	struct dirent *e;
	ssize_t n;

	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < nknown; i++) {
		if (known[i].dev == dev) {
			journaled = known[i].journaled;
			pthread_mutex_unlock(&lock);
			return journaled;
		}
	}
	pthread_mutex_unlock(&lock);
	snprintf(link, sizeof(link), "/sys/dev/block/%u:%u", major(dev),
	    minor(dev));
	if ((n = readlink(link, target, sizeof(target) - 1)) > 0) {
		target[n] = '\0';
		name = strrchr(target, '/') != NULL ? strrchr(target, '/') + 1 :
		    target;
		snprintf(prefix, sizeof(prefix), "%.*s-", NAME_MAX, name);
		if ((d = opendir("/proc/fs/jbd2")) != NULL) {
			while (!journaled && (e = readdir(d)) != NULL)
				journaled = strncmp(e->d_name, prefix,
				    strlen(prefix)) == 0;
			closedir(d);
		}
	}
	pthread_mutex_lock(&lock);
	if (nknown < sizeof(known) / sizeof(known[0])) {
		known[nknown].dev = dev;
		known[nknown++].journaled = journaled;
	}
	pthread_mutex_unlock(&lock);
	return journaled;
}

static int
data_durable(int fd)
{
	struct statfs sf;
	struct stat st;

	if (fstatfs(fd, &sf) == 0 && (sf.f_type == XFS_SUPER_MAGIC ||
	    (sf.f_type == EXT4_SUPER_MAGIC && fstat(fd, &st) == 0 &&
	    ext4_journaled(st.st_dev))) &&
	    sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE |
	    SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) == 0)
		return 0;
	return fsync(fd);
}

int
maildir_tmp_commit_flags(struct maildir_tmp **tmpp, const char *flags,
			 char **path_r, const char **error_r)
{
	return maildir_tmp_commit_to(tmpp, NULL, flags, path_r, error_r);
}

int
maildir_tmp_commit_to(struct maildir_tmp **tmpp, const char *maildir,
		      const char *flags, char **path_r, const char **error_r)
{
	return tmp_commit(tmpp, maildir, flags, NULL, path_r, error_r);
}

int
maildir_tmp_commit_batch(struct maildir_tmp **tmpp, const char *flags,
			 struct maildir_batch *batch, char **path_r,
			 const char **error_r)
{
	return tmp_commit(tmpp, NULL, flags, batch, path_r, error_r);
}

static int
tmp_commit(struct maildir_tmp **tmpp, const char *maildir, const char *flags,
	   struct maildir_batch *batch, char **path_r, const char **error_r)
{
	struct maildir_tmp *tmp;
	int ret, err, fd;

	if (path_r != NULL)
		*path_r = NULL;
	if (tmpp == NULL || *tmpp == NULL)
		return err_fail(error_r, ERR_OTHER,
		    "no maildir tmp file to commit");
	tmp = *tmpp;
	if (tmp->failed) {
		err_fail(error_r, ERR_OTHER,
		    "not committing %s: a write failed",
		    tmp->tmp_path);
		maildir_tmp_abort(tmpp);
		return -1;
	}
	if (tmp->held_cr) {
		tmp->held_cr = false;
		if (maildir_tmp_write(tmp, "\r", 1, error_r) < 0) {
			maildir_tmp_abort(tmpp);
			return -1;
		}
	}
	/* the date before the name: a reader that finds the file in cur/
	 * or new/ sees its final mtime (IMAP INTERNALDATE never changes) */
	if (tmp->set_mtime) {
		struct timespec ts[2] = { tmp->mtime, tmp->mtime };

		if (futimens(tmp->fd, ts) == -1) {
			err_fail(error_r, errno, "futimens(%s) failed: %s",
			    tmp->tmp_path, strerror(errno));
			maildir_tmp_abort(tmpp);
			return -1;
		}
	}
	if (batch != NULL && !batch->flushing) {
		/* start the writeback now, wait for it when the batch is
		 * flushed: the copies' writes overlap */
		struct batch_pending *p = &batch->pending[batch->npending++];

		(void)sync_file_range(tmp->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		p->tmp = tmp;
		p->flags = flags != NULL ? xstrdup(flags) : NULL;
		*tmpp = NULL;
		if (batch->npending == BATCH_OPEN_MAX &&
		    batch_flush(batch, error_r) < 0) {
			batch_clear(batch, true);
			return -1;
		}
		return 0;
	}
	if (data_durable(tmp->fd) == -1) {
		err_fail(error_r, errno, "fsync(%s) failed: %s", tmp->tmp_path,
		    strerror(errno));
		maildir_tmp_abort(tmpp);
		return -1;
	}
	fd = tmp->fd;
	tmp->fd = -1;
	if (close(fd) == -1) {
		/* NFS reports delayed write errors here */
		err_fail(error_r, errno, "close(%s) failed: %s", tmp->tmp_path,
		    strerror(errno));
		maildir_tmp_abort(tmpp);
		return -1;
	}
	if (maildir == NULL) {
		maildir = tmp->maildir;
	} else if (maildir_check_dirs(maildir, error_r) < 0) {
		maildir_tmp_abort(tmpp);
		return -1;
	}
	ret = link_unique(tmp->tmp_path, maildir, tmp->size, true,
	    tmp->vsize, flags, NULL, true, batch, path_r, &err, error_r);
	if (ret == -2 && maildir != tmp->maildir && err == EXDEV) {
		/* another file system than the one of the tmp/ it was
		 * written to: copy (the date goes with it) */
		ret = copy_into(tmp->tmp_path, maildir, flags, path_r,
		    error_r);
	} else if (ret == -2) {
		ret = err_fail(error_r, err, "link(%s) into %s failed: %s",
		    tmp->tmp_path, maildir, strerror(err));
	}
	/* after success the tmp name is just a second link (or gone if it
	 * was renamed); after failure it is the only copy: remove it. */
	maildir_tmp_abort(tmpp);
	return ret < 0 ? -1 : 0;
}

int
maildir_tmp_commit(struct maildir_tmp **tmpp, char **path_r,
		   const char **error_r)
{
	return maildir_tmp_commit_flags(tmpp, NULL, path_r, error_r);
}

int
maildir_deliver(const char *maildir, const void *data, size_t len,
		char **path_r, const char **error_r)
{
	struct maildir_tmp *tmp;

	if (path_r != NULL)
		*path_r = NULL;
	if (maildir_tmp_open(maildir, &tmp, error_r) < 0)
		return -1;
	if (maildir_tmp_write(tmp, data, len, error_r) < 0) {
		maildir_tmp_abort(&tmp);
		return -1;
	}
	return maildir_tmp_commit(&tmp, path_r, error_r);
}

/* Copy src into maildir through tmp/ (the EXDEV fallback), with src's
 * mtime (IMAP INTERNALDATE) set before the copy gets its name. */
static int
copy_into(const char *src, const char *maildir, const char *flags,
	  char **path_r, const char **error_r)
{
	struct maildir_tmp *tmp;
	char buf[65536];
	struct stat st;
	ssize_t n;
	int fd;

	/* a message is a regular file: never through a symbolic link */
	fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd == -1)
		return err_fail(error_r, errno, "open(%s) failed: %s", src,
		    strerror(errno));
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_fail(error_r, ERR_OTHER,
		    "%s is not a regular file", src);
	}
	if (maildir_tmp_open(maildir, &tmp, error_r) < 0) {
		close(fd);
		return -1;
	}
	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err_fail(error_r, errno, "read(%s) failed: %s", src,
			    strerror(errno));
			goto fail;
		}
		if (maildir_tmp_write(tmp, buf, (size_t)n, error_r) < 0)
			goto fail;
	}
	close(fd);
	maildir_tmp_set_mtime(tmp, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	return maildir_tmp_commit_flags(&tmp, flags, path_r, error_r);
fail:
	close(fd);
	maildir_tmp_abort(&tmp);
	return -1;
}

int
maildir_link_into_flags(const char *src_path, uint64_t size,
			const char *maildir, const char *flags,
			char **path_r, const char **error_r)
{
	return maildir_link_into_extra(src_path, size, maildir, flags, NULL,
	    path_r, error_r);
}

int
maildir_link_into_extra(const char *src_path, uint64_t size,
			const char *maildir, const char *flags,
			const char *extra, char **path_r,
			const char **error_r)
{
	struct maildir_name name;
	const char *slash;
	char *root;
	int ret, err;

	if (path_r != NULL)
		*path_r = NULL;
	if (maildir == NULL || *maildir == '\0')
		return err_fail(error_r, ERR_OTHER, "empty maildir path");
	slash = strrchr(src_path, '/');
	slash = slash == NULL ? src_path : slash + 1;
	if (maildir_name_parse(slash, strlen(slash), &name) < 0)
		name.has_vsize = false;
	root = path_trim(maildir);
	ret = link_unique(src_path, root, size, name.has_vsize, name.vsize,
	    flags, extra, false, NULL, path_r, &err, error_r);
	if (ret == -2)
		ret = copy_into(src_path, root, flags, path_r, error_r);
	free(root);
	return ret;
}

int
maildir_link_into(const char *src_path, uint64_t size, const char *maildir,
		  char **path_r, const char **error_r)
{
	return maildir_link_into_flags(src_path, size, maildir, NULL, path_r,
	    error_r);
}

/* ---- file names ---- */

static bool
is_flag_letter(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

int
maildir_flags_normalize(const char *flags, size_t len,
			char out[MAILDIR_FLAGS_MAX + 1])
{
	bool seen[128] = { false };
	size_t i, n = 0;
	unsigned char c;

	for (i = 0; i < len; i++) {
		c = (unsigned char)flags[i];
		if (!is_flag_letter(c))
			return -1;
		seen[c] = true;
	}
	for (c = 'A'; c <= 'Z'; c++)
		if (seen[c])
			out[n++] = (char)c;
	for (c = 'a'; c <= 'z'; c++)
		if (seen[c])
			out[n++] = (char)c;
	out[n] = '\0';
	return 0;
}

bool
maildir_flags_has(const char *flags, char flag)
{
	return flag != '\0' && strchr(flags, flag) != NULL;
}

/* digits in [p, end): at least one, no overflow of uint64_t. */
static int
parse_u64(const char *p, const char *end, uint64_t *value_r)
{
	uint64_t v = 0;
	unsigned int d;

	if (p == end)
		return -1;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		d = (unsigned int)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*value_r = v;
	return 0;
}

int
maildir_name_parse(const char *name, size_t len, struct maildir_name *out)
{
	const char *p, *end, *field, *fend;
	size_t i;

	memset(out, 0, sizeof(*out));
	if (name == NULL || len == 0 || len > NAME_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		if (name[i] == '\0' || name[i] == '/')
			return -1;
	}
	if (name[0] == '.')
		return -1;
	end = name + len;
	for (p = name; p < end && *p != ',' && *p != ':'; p++)
		;
	if (p == name)
		return -1;
	out->base = name;
	out->base_len = (size_t)(p - name);

	while (p < end && *p == ',') {
		field = p + 1;
		for (fend = field; fend < end && *fend != ',' && *fend != ':';
		    fend++)
			;
		if (fend == field)
			return -1;
		if (fend - field >= 2 && field[1] == '=' &&
		    (field[0] == 'S' || field[0] == 'W')) {
			bool *has = field[0] == 'S' ? &out->has_size :
			    &out->has_vsize;
			uint64_t *val = field[0] == 'S' ? &out->size :
			    &out->vsize;

			if (*has || parse_u64(field + 2, fend, val) < 0)
				return -1;
			*has = true;
		}
		p = fend;
	}
	out->prefix_len = (size_t)(p - name);
	if (p == end)
		return 0;
	/* *p == ':' */
	if (end - p < 3 || p[1] != '2' || p[2] != ',')
		return -1;
	p += 3;
	out->has_info = true;
	return maildir_flags_normalize(p, (size_t)(end - p), out->flags);
}

void
maildir_msgs_free(struct maildir_msg **msgs, size_t n)
{
	if (*msgs == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		free((*msgs)[i].name);
		free((*msgs)[i].uidl);
	}
	free(*msgs);
	*msgs = NULL;
}

char *
maildir_msg_path(const char *maildir, const struct maildir_msg *m)
{
	return xasprintf("%s/%s/%s", maildir, m->in_cur ? "cur" : "new",
	    m->name);
}

int
maildir_name_set_flags(const char *name, const char *flags,
		       char **new_name_r)
{
	char nflags[MAILDIR_FLAGS_MAX + 1];
	struct maildir_name parsed;
	const char *colon;
	size_t prefix;

	*new_name_r = NULL;
	if (name == NULL || flags == NULL)
		return -1;
	colon = strchr(name, ':');
	prefix = colon == NULL ? strlen(name) : (size_t)(colon - name);
	if (maildir_name_parse(name, prefix, &parsed) < 0)
		return -1;
	if (maildir_flags_normalize(flags, strlen(flags), nflags) < 0)
		return -1;
	/* The new name must still be one directory entry. */
	if (prefix + 3 + strlen(nflags) > NAME_MAX)
		return -1;
	*new_name_r = xasprintf("%.*s:2,%s", (int)prefix, name, nflags);
	return 0;
}

int
maildir_tmp_cleanup(const char *dir, time_t max_age, const char **error_r)
{
	time_t limit = time(NULL) - max_age;
	DIR *d = opendir(dir);
	struct dirent *de;
	int removed = 0;

	if (d == NULL) {
		int e = errno;

		err_fail(error_r, e, "cannot read %s: %s", dir, strerror(e));
		errno = e;
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (de->d_name[0] == '.' && (de->d_name[1] == '\0' ||
		    (de->d_name[1] == '.' && de->d_name[2] == '\0')))
			continue;
		if (de->d_type != DT_REG && de->d_type != DT_UNKNOWN)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st,
		    AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
		    st.st_mtime >= limit || st.st_ctime >= limit)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}

void
maildir_clean_tmp(const char *dir, const char *who)
{
	char *tmp = xasprintf("%s/tmp", dir);
	const char *err;
	int n = maildir_tmp_cleanup(tmp, TMP_MAX_AGE, &err);

	if (n < 0 && errno != ENOENT)
		log_warn("%s: %s", who, err);
	else if (n > 0)
		log_info("%s: removed %d file(s) older than %d hours from %s",
		    who, n, TMP_MAX_AGE / 3600, tmp);
	free(tmp);
}
