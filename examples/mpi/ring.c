/*
 * A small MPI job with application-level checkpoints that name the rank's PID.
 *
 * Every rank holds a value; each iteration all ranks mix their values (MPI_Allreduce) and
 * advance. Every CKPT_EVERY iterations each rank writes  DIR/<iter>/rank-<r>-pid-<pid>  and,
 * after a barrier, rank 0 commits the iteration in DIR/committed. On start a rank looks for the
 * committed iteration's file under ITS OWN CURRENT PID: found means "I am the same process
 * restored", and it resumes from there; a rank whose PID changed finds nothing and the job
 * refuses to resume (exit 3) rather than silently start over.
 *
 * usage: ring DIR ITERATIONS [MILLISECONDS_PER_ITERATION]
 * prints: "result <value> iterations <n> resumed-from <k>" from rank 0.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CKPT_EVERY 5
#define MODULUS 1000000007ULL

static uint64_t step(uint64_t mine, uint64_t sum, int iteration, int rank) {
    return (mine * 31 + sum + (uint64_t)iteration * 7 + (uint64_t)rank) % MODULUS;
}

static long read_committed(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/committed", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long k = -1;
    if (fscanf(f, "%ld", &k) != 1) k = -1;
    fclose(f);
    return k;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 3) {
        if (rank == 0) fprintf(stderr, "usage: ring DIR ITERATIONS [MS]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    const char *dir = argv[1];
    long iterations = atol(argv[2]);
    long ms = argc > 3 ? atol(argv[3]) : 20;
    pid_t pid = getpid();

    uint64_t value = (uint64_t)rank + 1;
    long start = 0;
    long committed = read_committed(dir);
    int found = 1;
    if (committed >= 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%ld/rank-%d-pid-%d", dir, committed, rank, (int)pid);
        FILE *f = fopen(path, "r");
        unsigned long long v = 0;
        if (f && fscanf(f, "%llu", &v) == 1) {
            value = v;
            start = committed;
        } else {
            found = 0;
        }
        if (f) fclose(f);
    }
    int all_found = 0;
    MPI_Allreduce(&found, &all_found, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_found) {
        if (!found) fprintf(stderr, "rank %d: no checkpoint for iteration %ld under my PID %d\n", rank, committed, (int)pid);
        MPI_Finalize();
        return 3;
    }
    if (committed >= 0) printf("rank %d pid %d resumes at iteration %ld\n", rank, (int)pid, start);
    fflush(stdout);

    for (long it = start; it < iterations; it++) {
        uint64_t sum = 0;
        MPI_Allreduce(&value, &sum, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
        value = step(value, sum % MODULUS, (int)it, rank);
        long done = it + 1;
        if (done % CKPT_EVERY == 0 && done < iterations) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%ld", dir, done);
            mkdir(path, 0755);
            snprintf(path, sizeof path, "%s/%ld/rank-%d-pid-%d", dir, done, rank, (int)pid);
            FILE *f = fopen(path, "w");
            if (!f) { perror(path); MPI_Abort(MPI_COMM_WORLD, 4); }
            fprintf(f, "%llu\n", (unsigned long long)value);
            fclose(f);
            MPI_Barrier(MPI_COMM_WORLD);
            if (rank == 0) {
                char tmp[4096], fin[4096];
                snprintf(tmp, sizeof tmp, "%s/committed.tmp", dir);
                snprintf(fin, sizeof fin, "%s/committed", dir);
                FILE *c = fopen(tmp, "w");
                fprintf(c, "%ld\n", done);
                fclose(c);
                rename(tmp, fin);
            }
        }
        if (ms > 0) {
            struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
    }
    uint64_t total = 0;
    MPI_Reduce(&value, &total, 1, MPI_UINT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) printf("result %llu iterations %ld resumed-from %ld\n", (unsigned long long)(total % MODULUS), iterations, start);
    /* Out before MPI_Finalize, which MPICH 4.0.2 over UCX's TCP transport sometimes never leaves. */
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
