"""The keep policy: when a change is kept. Read this first; the words are defined in overnight.records.

The modules:

* ``rule``: the decision, as pure functions of measured values (``decide`` and the rules around it), with
  its constants (``SCREEN``, ``FUTILITY``, ``FOLLOW_UP_RUNS``, ``RECHECK_*``, ``SUSPICIOUS``, ...);
* ``noise``: the noise model the decision is made with (``Noise`` pooled over the run, clipped, maybe
  relative to the level) and ``compare``, the one estimated ``Gain`` every view shows;
* ``tdist``: Student's t distribution (``t_cdf``, ``t_quantile``), without scipy;
* ``measure``: ``Measurer``, which takes the measurements ``rule`` asks for and records them;
* ``guards``: secondary metrics a keep must not make worse (``[metric] guards``);
* ``seeds``: the seed each run gets, and whether it reaches the script.

The policy, in the order a candidate meets it (the loop's steps 6 and 7, overnight.run.loop, call
``Measurer.first`` then ``Measurer.until_judged``):

1. **Screen.** The candidate is measured once (``measure.Measurer.first``). ``rule.decide``, on that one run,
   discards it unless it beats the best by the threshold (``rule.threshold``: ``min_delta`` or ``rel_delta``)
   plus ``rule.SCREEN`` standard errors. A first run far worse than the noise explains
   (``rule.suspicious``) is not trusted to discard alone: ``Measurer._retaken`` measures it again and sets
   the first run aside when the second looks normal.
2. **Confirm.** A candidate past the screen is measured again (``Action.MEASURE_CANDIDATE``), and the best
   with it until the best has as many runs (``Action.MEASURE_BEST``, ``Measurer._best``); ``rule.decide``
   looks after each run, and ``Measurer.until_judged`` loops until it says keep or discard.
3. **The level of each look.** Each look that can keep is a one-sided t-test at ``rule.look_level``:
   α / (``max_repeats`` − 1), so the whole sequence keeps a no-op with probability at most α. Its
   variance is pooled over every experiment of the run measured more than once (``noise.Noise.pooled``,
   scaled by ``Noise.at``; ``RunState.noise`` pools it), its quantile is ``tdist.t_quantile``. Below
   ``rule.FUTILITY`` (+ ``FUTILITY_STEP`` per look) or at ``max_repeats`` it discards; while the noise
   rests on under ``rule.DISTURBED_DF`` degrees of freedom a clear gain gets up to ``rule.UNSETTLED`` more
   runs. Where repeats never vary and the metric is not declared exact (``noise.unvaried``), the noise is
   unknown and the threshold alone decides.
4. **Guards, then follow-up.** A keep that breaks a guard (``Measurer.broken_guards``, ``guards.broken``) is
   discarded. Otherwise ``Measurer._kept`` measures it ``rule.FOLLOW_UP_RUNS`` more time(s) (the winner's
   curse), estimates its gain on every run (``noise.compare``), and discards it if, with its follow-up, it
   is already no better than the best (``rule.undone``).
5. **Recheck.** After a first-run discard, ``Measurer._screened`` notes the screen z against the best's
   current estimate (memo: ``RunState.screened``, keyed by the best and its number of runs); when the
   last screened-out candidates land far below it (``rule.recheck``), the best is measured once more.
6. **Undone.** Each time a kept best is measured again (``Measurer._best``), its gain over the best it
   replaced is estimated anew; if it is no longer better by the threshold (``rule.undone``),
   ``RunState.undo`` moves the run branch back and records the keep as a discard.
7. **Disturbed runs set aside.** After each run of the candidate while it is judged, and of the best measured
   again, ``Measurer.set_aside_disturbed`` sets aside (``RunState.set_aside``: kept in the ledger, out of every
   estimate and of the pooled noise) a run taken while other programs used ``[judge] disturbed_load`` more
   of the machine than usual (``Measured.contention`` against ``RunState.usual_contention``), or one worse
   than the experiment's best run by more than the noise explains (``rule.disturbed_runs``); at most
   ``measure.MAX_ASIDE`` per experiment. A candidate left with no run is measured again. Before each run,
   when the last one was taken under such load (``RunState.last_contention``), ``Measurer._wait_for_quiet``
   waits (up to ``[judge] wait_for_quiet_s``) for the machine to be quiet.
8. **The seed.** The n-th measurement of a commit in a round (from 0) runs with ``OVERNIGHT_SEED = n``
   (``RunState.next_seed``, in ``Measurer._once``), so candidate and best see the same seeds in the same
   order; ``seeds.planted`` writes it into a script that fixes its own seed (``[judge] seed``).

The state the policy reads and writes lives in overnight.run.state (``RunState``): the measured values
(``values``, ``measurements``), the pooled ``noise``, and the memos ``screened``, ``usual_contention``,
``last_contention`` and the seeds reserved by ``next_seed``. ``benchmarks/judge.py`` simulates the whole
policy, through the real ``Measurer``.
"""
