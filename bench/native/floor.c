/*
 * The machine's floors for the vshm bench (issue 12): what the hardware and kernel give a C
 * program on the same CPUs in the same run, so vshm's figures can be read against them.
 *
 *   floor spin ROUNDS [CPU_A CPU_B]     two processes ping-pong one cache line in shared memory,
 *                                       busy-waiting (no syscall): µs per round trip
 *   floor eventfd ROUNDS [CPU_A CPU_B]  the same ping-pong over two eventfds, blocking read()
 *   floor memcpy SECONDS                GB/s of 64 KiB memcpy into 64 rotating destinations
 *                                       (4 MiB, the bulk64k ring's working set)
 *   floor ring ROUNDS [CPU_A CPU_B]     rtt64's round trip on a split virtqueue in C: the driver
 *                                       copies 64 B into its request buffer and publishes head 0,
 *                                       the device checks both descriptors, echoes the 64 B into the
 *                                       reply buffer and publishes the used entry, the driver checks
 *                                       that entry, reads the reply and zeroes its buffer. Ring
 *                                       shape, placement and the skip of unchanged ring entries as
 *                                       in vshm; no notification fields, no bounds beyond the
 *                                       ring's own: the split ring's floor on these CPUs
 *   floor pipe SECONDS [CPU_A CPU_B]    GB/s of bulk64k's data path with no ring code: a producer
 *                                       process copies 64 KiB pieces into 64 slots of shared
 *                                       memory, a consumer process copies each out into a private
 *                                       buffer; two counters in their own cache lines, busy-waiting
 *
 * CPU_A/CPU_B pin the parent and the child with sched_setaffinity (what taskset does), as
 * run.mjs pins rtt64. Prints one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

static void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    fprintf(stderr, "floor: sched_setaffinity(%d): %s\n", cpu, strerror(errno));
    exit(1);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report_latency(double *s, long n) {
  qsort(s, n, sizeof *s, cmp_double);
  long m = n / 2, p = (long)(0.99 * n);
  if (p >= n) p = n - 1;
  printf("{\"median_us\":%.3f,\"p99_us\":%.3f,\"rounds\":%ld}\n", s[m], s[p], n);
}

/* One cache line, shared. A spinner that has not seen its peer for a long time yields, so an
 * unpinned run on a single CPU still finishes (it then measures the scheduler, not the line). */
struct line {
  _Alignas(64) volatile uint64_t seq;
};

static void wait_for(struct line *l, uint64_t want) {
  unsigned spins = 0;
  while (__atomic_load_n(&l->seq, __ATOMIC_ACQUIRE) != want) {
    cpu_relax();
    if (++spins == (1u << 16)) {
      spins = 0;
      sched_yield();
    }
  }
}

static int spin(long rounds, int cpu_a, int cpu_b) {
  struct line *l = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (l == MAP_FAILED) return perror("floor: mmap"), 1;
  l->seq = 0;
  long warm = rounds / 4 < 2000 ? rounds / 4 : 2000;
  long total = warm + rounds;
  pid_t child = fork();
  if (child < 0) return perror("floor: fork"), 1;
  if (child == 0) {
    pin(cpu_b);
    for (uint64_t i = 0; i < (uint64_t)total; i++) {
      wait_for(l, 2 * i + 1);
      __atomic_store_n(&l->seq, 2 * i + 2, __ATOMIC_RELEASE);
    }
    _exit(0);
  }
  pin(cpu_a);
  double *s = malloc(rounds * sizeof *s);
  for (long i = 0; i < total; i++) {
    double t0 = now_us();
    __atomic_store_n(&l->seq, 2 * (uint64_t)i + 1, __ATOMIC_RELEASE);
    wait_for(l, 2 * (uint64_t)i + 2);
    if (i >= warm) s[i - warm] = now_us() - t0;
  }
  waitpid(child, NULL, 0);
  report_latency(s, rounds);
  return 0;
}

static int evfd(long rounds, int cpu_a, int cpu_b) {
  int ping = eventfd(0, 0), pong = eventfd(0, 0);
  if (ping < 0 || pong < 0) return perror("floor: eventfd"), 1;
  long warm = rounds / 4 < 1000 ? rounds / 4 : 1000;
  long total = warm + rounds;
  uint64_t v = 1;
  pid_t child = fork();
  if (child < 0) return perror("floor: fork"), 1;
  if (child == 0) {
    pin(cpu_b);
    for (long i = 0; i < total; i++) {
      if (read(ping, &v, 8) != 8 || write(pong, &v, 8) != 8) _exit(1);
    }
    _exit(0);
  }
  pin(cpu_a);
  double *s = malloc(rounds * sizeof *s);
  for (long i = 0; i < total; i++) {
    double t0 = now_us();
    v = 1;
    if (write(ping, &v, 8) != 8 || read(pong, &v, 8) != 8) return perror("floor: eventfd io"), 1;
    if (i >= warm) s[i - warm] = now_us() - t0;
  }
  waitpid(child, NULL, 0);
  report_latency(s, rounds);
  return 0;
}

/* The split virtqueue's floor (VIRTIO 1.2 §2.7): rtt64's round trip with the same ring shape and
 * placement as vshm, in C, with nothing else. Driver rings (descriptor table, then the available
 * ring) in one page, the used ring in the next (the device's part), the two data buffers in a
 * third, each in its own cache line. One request in flight, always head 0 → descriptor 1, so
 * the descriptors hold their values after the first round and, as in vshm, ring entries that
 * already hold the value to be written are left alone: each round moves only the two index
 * words and the two data lines, the least a split ring can move. */
#define RQ 64
struct vq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags, next;
};
struct vq_avail {
  uint16_t flags, idx, ring[RQ];
};
struct vq_used_elem {
  uint32_t id, len;
};
struct vq_used {
  uint16_t flags, idx;
  struct vq_used_elem ring[RQ];
};
enum { F_NEXT = 1, F_WRITE = 2, MSG = 64, PAGE = 4096 };

static int ring_rtt(long rounds, int cpu_a, int cpu_b) {
  unsigned char *mem = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return perror("floor: mmap"), 1;
  memset(mem, 0, 3 * PAGE);
  struct vq_desc *desc = (struct vq_desc *)mem;
  struct vq_avail *avail = (struct vq_avail *)(mem + RQ * sizeof(struct vq_desc));
  struct vq_used *used = (struct vq_used *)(mem + PAGE);
  const uint64_t req = 2 * PAGE, rsp = 2 * PAGE + 64; /* offsets: the "addresses" of the buffers */
  long warm = rounds / 4 < 2000 ? rounds / 4 : 2000;
  long total = warm + rounds;
  pid_t child = fork();
  if (child < 0) return perror("floor: fork"), 1;
  if (child == 0) { /* the device */
    pin(cpu_b);
    uint16_t last = 0;
    for (long i = 0; i < total; i++) {
      unsigned spins = 0;
      while (__atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE) == last) {
        cpu_relax();
        if (++spins == (1u << 16)) spins = 0, sched_yield();
      }
      uint16_t head = avail->ring[last % RQ];
      if (head >= RQ) _exit(3);
      struct vq_desc d0 = desc[head];
      if (!(d0.flags & F_NEXT) || (d0.flags & F_WRITE) || d0.next >= RQ || d0.addr + d0.len > 3 * PAGE) _exit(3);
      struct vq_desc d1 = desc[d0.next];
      if ((d1.flags & F_NEXT) || !(d1.flags & F_WRITE) || d1.addr + d1.len > 3 * PAGE || d1.len < d0.len) _exit(3);
      memcpy(mem + d1.addr, mem + d0.addr, d0.len);
      struct vq_used_elem *u = &used->ring[last % RQ];
      if (u->id != head) u->id = head;
      if (u->len != d0.len) u->len = d0.len;
      last++;
      __atomic_store_n(&used->idx, last, __ATOMIC_RELEASE);
    }
    _exit(0);
  }
  pin(cpu_a);
  unsigned char msg[MSG], got[MSG];
  memset(msg, 0x61, MSG);
  double *s = malloc(rounds * sizeof *s);
  uint16_t next = 0;
  for (long i = 0; i < total; i++) {
    double t0 = now_us();
    memcpy(mem + req, msg, MSG);
    struct vq_desc d0 = {req, MSG, F_NEXT, 1}, d1 = {rsp, MSG, F_WRITE, 0};
    if (memcmp(&desc[0], &d0, sizeof d0)) desc[0] = d0;
    if (memcmp(&desc[1], &d1, sizeof d1)) desc[1] = d1;
    if (avail->ring[next % RQ] != 0) avail->ring[next % RQ] = 0;
    next++;
    __atomic_store_n(&avail->idx, next, __ATOMIC_RELEASE);
    unsigned spins = 0;
    while (__atomic_load_n(&used->idx, __ATOMIC_ACQUIRE) != next) {
      cpu_relax();
      if (++spins == (1u << 16)) spins = 0, sched_yield();
    }
    struct vq_used_elem u = used->ring[(uint16_t)(next - 1) % RQ];
    if (u.id != 0 || u.len != MSG) return fprintf(stderr, "floor: bad used entry\n"), 1;
    memcpy(got, mem + rsp, MSG);
    memset(mem + rsp, 0, MSG); /* vshm zeroes a device-written buffer when it frees it (§5.1) */
    __asm__ __volatile__("" ::: "memory");
    if (got[MSG - 1] != 0x61) return fprintf(stderr, "floor: bad echo\n"), 1;
    if (i >= warm) s[i - warm] = now_us() - t0;
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return fprintf(stderr, "floor: ring device failed\n"), 1;
  report_latency(s, rounds);
  return 0;
}

#define COPY (64 * 1024)
#define SLOTS 64

static int copy_rate(double seconds) {
  unsigned char *src = malloc(COPY), *dst = malloc((size_t)COPY * SLOTS);
  if (!src || !dst) return fprintf(stderr, "floor: out of memory\n"), 1;
  memset(src, 0x5a, COPY);
  memset(dst, 0, (size_t)COPY * SLOTS); /* fault the pages in before timing */
  /* Several timed slices; the median slice is reported (one preempted slice does not decide). */
  enum { SLICES = 7 };
  double rate[SLICES];
  for (int k = 0; k < SLICES; k++) {
    long n = 0;
    double t0 = now_us(), t1;
    do {
      for (int j = 0; j < 256; j++, n++) {
        memcpy(dst + (size_t)(n % SLOTS) * COPY, src, COPY);
        __asm__ __volatile__("" ::: "memory"); /* the copies are observable: not optimised away */
      }
      t1 = now_us();
    } while (t1 - t0 < seconds * 1e6 / SLICES);
    rate[k] = (double)n * COPY / ((t1 - t0) / 1e6) / 1e9;
  }
  qsort(rate, SLICES, sizeof *rate, cmp_double);
  printf("{\"gbps\":%.3f,\"copy_bytes\":%d,\"slots\":%d}\n", rate[SLICES / 2], COPY, SLOTS);
  return 0;
}

/* Producer → consumer through SLOTS shared 64 KiB slots. `head` (pieces produced) and `tail`
 * (pieces consumed) live in separate cache lines so each is written by one process only. The
 * consumer times slices and reports the median, then raises `stop`. */
struct pipe_ctl {
  struct line head, tail, stop;
};

static int pipe_rate(double seconds, int cpu_a, int cpu_b) {
  size_t ring = (size_t)COPY * SLOTS;
  struct pipe_ctl *ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  unsigned char *slots = mmap(NULL, ring, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (ctl == MAP_FAILED || slots == MAP_FAILED) return perror("floor: mmap"), 1;
  memset(slots, 0, ring); /* fault the shared pages in before timing */
  pid_t child = fork();
  if (child < 0) return perror("floor: fork"), 1;
  if (child == 0) {
    pin(cpu_b);
    unsigned char *src = malloc(COPY);
    if (!src) _exit(1);
    memset(src, 0x5a, COPY);
    for (uint64_t n = 0; !__atomic_load_n(&ctl->stop.seq, __ATOMIC_ACQUIRE); n++) {
      unsigned spins = 0;
      while (n - __atomic_load_n(&ctl->tail.seq, __ATOMIC_ACQUIRE) >= SLOTS) {
        if (__atomic_load_n(&ctl->stop.seq, __ATOMIC_ACQUIRE)) _exit(0);
        cpu_relax();
        if (++spins == (1u << 16)) spins = 0, sched_yield();
      }
      memcpy(slots + (n % SLOTS) * COPY, src, COPY);
      __atomic_store_n(&ctl->head.seq, n + 1, __ATOMIC_RELEASE);
    }
    _exit(0);
  }
  pin(cpu_a);
  unsigned char *dst = malloc(COPY);
  if (!dst) return fprintf(stderr, "floor: out of memory\n"), 1;
  memset(dst, 0, COPY);
  enum { SLICES = 7 };
  double rate[SLICES];
  uint64_t n = 0;
  for (int k = -1; k < SLICES; k++) { /* slice -1 warms up */
    uint64_t n0 = n;
    double t0 = now_us(), t1;
    do {
      for (int j = 0; j < 64; j++, n++) {
        unsigned spins = 0;
        while (__atomic_load_n(&ctl->head.seq, __ATOMIC_ACQUIRE) == n) {
          cpu_relax();
          if (++spins == (1u << 16)) spins = 0, sched_yield();
        }
        memcpy(dst, slots + (n % SLOTS) * COPY, COPY);
        __asm__ __volatile__("" ::: "memory");
        __atomic_store_n(&ctl->tail.seq, n + 1, __ATOMIC_RELEASE);
      }
      t1 = now_us();
    } while (t1 - t0 < seconds * 1e6 / SLICES);
    if (k >= 0) rate[k] = (double)(n - n0) * COPY / ((t1 - t0) / 1e6) / 1e9;
  }
  __atomic_store_n(&ctl->stop.seq, 1, __ATOMIC_RELEASE);
  waitpid(child, NULL, 0);
  qsort(rate, SLICES, sizeof *rate, cmp_double);
  printf("{\"gbps\":%.3f,\"copy_bytes\":%d,\"slots\":%d}\n", rate[SLICES / 2], COPY, SLOTS);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: floor spin|eventfd|ring ROUNDS [CPU_A CPU_B] | floor memcpy SECONDS | floor pipe SECONDS [CPU_A CPU_B]\n");
    return 2;
  }
  int a = argc > 4 ? atoi(argv[3]) : -1, b = argc > 4 ? atoi(argv[4]) : -1;
  if (!strcmp(argv[1], "spin")) return spin(atol(argv[2]), a, b);
  if (!strcmp(argv[1], "eventfd")) return evfd(atol(argv[2]), a, b);
  if (!strcmp(argv[1], "ring")) return ring_rtt(atol(argv[2]), a, b);
  if (!strcmp(argv[1], "memcpy")) return copy_rate(atof(argv[2]));
  if (!strcmp(argv[1], "pipe")) return pipe_rate(atof(argv[2]), a, b);
  fprintf(stderr, "floor: unknown mode '%s'\n", argv[1]);
  return 2;
}
