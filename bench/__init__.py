"""Benchmarks of disync-operator against the floor, on a real kube-apiserver + etcd and the DataWorks emulator.

`python -m bench` (or `make bench BENCH_ARGS=...`) measures, in one run and under stated conditions:

- P1 burst: N CRs created at once, time until all are Ready, against the *floor* (a minimal script doing the same
  creates, one start and one status patch per CR, with the same QPS limit and concurrency cap);
- P2 memory: operator RSS at 0, N1 and N2 Ready CRs;
- P3 restart: API calls and time to idle when the operator restarts with N2 Ready CRs;
- P4 latency: apply -> Ready percentiles at a steady create rate;
- P5 observation at scale: with N2 started CRs (most naming one of a few Secrets), apply -> Ready percentiles of a
  burst of new CRs with the sweep observing every started CR vs not observing, at the operator's default QPS; with
  the observation period, DataWorks calls by action and API-server requests (Secret GETs per pass). Alone:
  `python -m bench --only P5 --merge` (--merge keeps the other sections of the existing latest.json).

It writes bench/results/latest.json and latest.md (with the machine it ran on). `--small` is the smoke size run
by tests/integration/test_bench_smoke.py so the harness cannot rot.
"""
