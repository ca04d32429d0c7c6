/* The system calls a loaded-stage plan cannot do without, and nothing else.
 *
 * For each object given (the program, its interpreter and every library, as
 * `elfmap deps --json` lists them), this does what any planner must do to learn where
 * the object goes and what /proc/PID/maps will call it: open it, fstat it (device and
 * inode), read its ELF header and program headers, its dynamic section and the strings
 * of that section (DT_NEEDED, DT_RUNPATH), read its name's symlink once (the canonical
 * path), close it. No model, no cache, no output, one thread: bench/run.sh times this
 * as a process beside `elfmap plan`, so that the figures show how much of a plan's time
 * is this machine's cost of the input alone. `floor -2 PATH...` shares the objects
 * between two threads (elfmap's resolver has a helper thread). 64-bit objects only (the
 * bench programs). */
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* File offset of virtual address v, through the PT_LOAD that holds it (0 if none). */
static off_t offset_of(const Elf64_Phdr *ph, int n, Elf64_Addr v)
{
	for (int i = 0; i < n; i++)
		if (ph[i].p_type == PT_LOAD && v >= ph[i].p_vaddr && v < ph[i].p_vaddr + ph[i].p_filesz)
			return (off_t)(v - ph[i].p_vaddr + ph[i].p_offset);
	return 0;
}

static int visit(const char *path)
{
	unsigned char head[1024];
	Elf64_Dyn dyn[512];
	char strings[512], link[4096];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || pread(fd, head, sizeof head, 0) != sizeof head) {
		perror(path);
		return 1;
	}
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)head;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_phoff + (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > sizeof head) {
		fprintf(stderr, "%s: not a 64-bit ELF file with its program headers in 1 KiB\n", path);
		return 1;
	}
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(head + eh->e_phoff);
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_DYNAMIC)
			continue;
		size_t len = ph[i].p_filesz < sizeof dyn ? ph[i].p_filesz : sizeof dyn;
		ssize_t got = pread(fd, dyn, len, (off_t)ph[i].p_offset);
		for (ssize_t j = 0; got > 0 && j < got / (ssize_t)sizeof *dyn; j++)
			if (dyn[j].d_tag == DT_STRTAB) {
				off_t at = offset_of(ph, eh->e_phnum, dyn[j].d_un.d_ptr);
				if (pread(fd, strings, sizeof strings, at) < 0)
					perror(path);
				break;
			}
	}
	(void)readlink(path, link, sizeof link);
	close(fd);
	return 0;
}

static char **objs;
static int nobjs;

/* Every second object, from the first or the second. */
static void *visit_half(void *from)
{
	intptr_t bad = 0;
	for (int i = (int)(intptr_t)from; i < nobjs; i += 2)
		bad |= visit(objs[i]);
	return (void *)bad;
}

int main(int argc, char **argv)
{
	int two = argc > 1 && !strcmp(argv[1], "-2");
	objs = argv + 1 + two;
	nobjs = argc - 1 - two;
	if (!two)
		return (int)(intptr_t)visit_half(0) | (int)(intptr_t)visit_half((void *)1);
	pthread_t t;
	void *other;
	if (pthread_create(&t, NULL, visit_half, (void *)1))
		return 1;
	intptr_t bad = (intptr_t)visit_half(0);
	pthread_join(t, &other);
	return (int)(bad | (intptr_t)other);
}
