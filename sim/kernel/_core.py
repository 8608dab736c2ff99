"""The compiled event loop of :mod:`sim.kernel.engine` (numba); read that module's docstring first.

Every resource is a processor-sharing server run in *virtual time*: all flows on
a resource get the same rate ``r(t)``, so the resource keeps ``V`` (amount one
flow would have received since an arbitrary origin) and a flow that joins with
``a`` units finishes when ``V`` reaches ``V_join + a``. A join or a departure
changes ``r`` but never another flow's finishing value of ``V``; an event costs
O(log flows) on HBM and L2 (binary heaps) and O(CTAs per SM) on an SM's pipes,
plus an O(SMs) scan of the pipes' next finishing times. The pipes' virtual
times are brought up to date lazily, only when a flow joins or leaves.
"""

from __future__ import annotations

import numpy as np
from numba import njit

LOAD, MMA, FMA, STORE, SIGNAL, WAIT, DELAY = 0, 1, 2, 3, 4, 5, 6
OK, DEADLOCK = 0, 1
REL_TOL = 1e-12  # flows within this relative distance of the current virtual time finish together


@njit(cache=True)
def _heap_push(key, val, size, k, v):
    i = size
    key[i] = k
    val[i] = v
    while i > 0:
        parent = (i - 1) >> 1
        # order by key, then by value (slot) so that ties pop deterministically
        if key[parent] < key[i] or (key[parent] == key[i] and val[parent] <= val[i]):
            break
        key[parent], key[i] = key[i], key[parent]
        val[parent], val[i] = val[i], val[parent]
        i = parent
    return size + 1


@njit(cache=True)
def _heap_pop(key, val, size):
    top = val[0]
    size -= 1
    key[0] = key[size]
    val[0] = val[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        c = left
        right = left + 1
        if right < size and (key[right] < key[left] or (key[right] == key[left] and val[right] < val[left])):
            c = right
        if key[i] < key[c] or (key[i] == key[c] and val[i] <= val[c]):
            break
        key[c], key[i] = key[i], key[c]
        val[c], val[i] = val[i], val[c]
        i = c
    return top, size


@njit(cache=True)
def _pipe_join(pV, plast, pn, pmin, pnext, q, now, amount):
    """A compute phase joins pipe ``q`` (processor sharing): advance the pipe's virtual time to
    ``now``, add the phase, and return its finish in virtual time; ``pnext`` is when the
    earliest phase on the pipe will finish in real cycles."""
    if pn[q] > 0:
        pV[q] += (now - plast[q]) / pn[q]
    plast[q] = now
    fin = pV[q] + amount
    pn[q] += 1
    if fin < pmin[q]:
        pmin[q] = fin
    pnext[q] = now + (pmin[q] - pV[q]) * pn[q]
    return fin


@njit(cache=True)
def _flow_done(c, cta_lidx, cta_lpend, cta_pending):
    """A load or store flow of CTA ``c`` finished: count it against the CTA's pipelined load (stages >= 2; a
    store never runs beside one) or its pending phases; True when that count reaches 0."""
    if cta_lidx[c] >= 0:
        cta_lpend[c] -= 1
        if cta_lpend[c] == 0:
            cta_lidx[c] = -1
            return True
        return False
    cta_pending[c] -= 1
    return cta_pending[c] == 0


@njit(cache=True)
def _mark_ready(c, done, cta_inready, ready, nr):
    """Queue CTA ``c`` to advance (once) when ``done``, its last pending phase having finished; returns ``nr``."""
    if done and not cta_inready[c]:
        cta_inready[c] = True
        ready[nr] = c
        nr += 1
    return nr


@njit(cache=True)
def run_core(kind, a, b, flag, cta_ptr, kernel_ptr, kernel_occ, kernel_stages, launch_cycles, n_sm,
             hbm_cap, l2_cap, hbm_flow_cap, l2_flow_cap, n_flags):
    """Simulate; amounts ``a`` are HBM bytes (LOAD, STORE), pipe cycles (MMA, FMA) or counts, ``b`` L2 bytes.

    Returns (status, info[4], cta_sm, cta_start, cta_end, kernel_start, kernel_end, events).
    """
    n_cta = cta_ptr.shape[0] - 1
    n_kernel = kernel_ptr.shape[0] - 1
    occ_max = 1
    for k in range(n_kernel):
        occ_max = max(occ_max, kernel_occ[k])
    n_slot = n_sm * occ_max

    cta_sm = np.full(n_cta, -1, np.int64)
    cta_start = np.full(n_cta, np.nan)
    cta_end = np.full(n_cta, np.nan)
    cta_phase = cta_ptr[:-1].copy()
    cta_pending = np.zeros(n_cta, np.int64)
    cta_slot = np.full(n_cta, -1, np.int64)
    # CTAs of kernels with stages >= 2 (see the engine docstring, "Stages"): cta_phase is the
    # consumer's phase; the producer's next LOAD (or the fence / end that stops it) is cta_lp, the
    # load in flight cta_lidx (-1: none) with cta_lpend unfinished parts; cta_ahead counts issued
    # loads whose group's compute is not done (a segment's leading compute counts as one group);
    # cta_open: the consumer is inside a group; cta_cbusy: a consumer flow (compute, store) runs.
    cta_lp = np.zeros(n_cta, np.int64)
    cta_lidx = np.full(n_cta, -1, np.int64)
    cta_lpend = np.zeros(n_cta, np.int64)
    cta_ahead = np.zeros(n_cta, np.int64)
    cta_open = np.zeros(n_cta, np.bool_)
    cta_cbusy = np.zeros(n_cta, np.bool_)
    cta_inready = np.zeros(n_cta, np.bool_)
    kernel_start = np.full(n_kernel, np.nan)
    kernel_end = np.full(n_kernel, np.nan)
    info = np.full(4, -1.0)

    slot_cta = np.full(n_slot, -1, np.int64)
    slot_pipe = np.full(n_slot, -1, np.int64)  # 0 tensor, 1 CUDA core, -1 none
    slot_fin = np.zeros(n_slot)
    slot_wait = np.zeros(n_slot, np.bool_)
    sm_count = np.zeros(n_sm, np.int64)
    # SM pipes (index p * n_sm + s; p = 0 tensor, 1 CUDA core), updated lazily: pV is the virtual time
    # at time plast; pnext is the absolute time at which the pipe's earliest flow finishes.
    n_pipe = 2 * n_sm
    pV = np.zeros(n_pipe)
    plast = np.zeros(n_pipe)
    pn = np.zeros(n_pipe, np.int64)
    pmin = np.full(n_pipe, np.inf)
    pnext = np.full(n_pipe, np.inf)
    hk = np.zeros(n_slot)
    hv = np.zeros(n_slot, np.int64)
    lk = np.zeros(n_slot)
    lv = np.zeros(n_slot, np.int64)
    dk = np.zeros(n_slot)  # DELAY phases: absolute finish time, slot (stages = 1 kernels only)
    dv = np.zeros(n_slot, np.int64)
    dsize = 0
    hsize = 0
    lsize = 0
    Vh = 0.0
    Vl = 0.0
    fcount = np.zeros(max(n_flags, 1), np.int64)
    n_waiting = 0

    ready = np.zeros(n_slot, np.int64)
    rkey = np.zeros(n_slot, np.int64)
    zero1 = np.zeros(1, np.int64)
    nr = 0

    now = 0.0
    events = 0
    status = OK
    k = 0
    occ = 1
    st = 1
    next_cta = 0
    last_cta = 0
    done = 0
    kernel_active = False
    next_kernel_time = launch_cycles

    while True:
        if not kernel_active:
            if k == n_kernel:
                break
            now = max(now, next_kernel_time)
            kernel_active = True
            kernel_start[k] = now
            next_cta = kernel_ptr[k]
            last_cta = kernel_ptr[k + 1]
            occ = kernel_occ[k]
            st = kernel_stages[k]
            done = 0
        else:
            # ---- next event: the earliest finishing flow over every resource
            dt = np.inf
            which = -3
            rh = 0.0
            rl = 0.0
            if hsize > 0:
                rh = min(hbm_flow_cap, hbm_cap / hsize)
                d = (hk[0] - Vh) / rh
                if d < dt:
                    dt = d
                    which = -1
            if lsize > 0:
                rl = min(l2_flow_cap, l2_cap / lsize)
                d = (lk[0] - Vl) / rl
                if d < dt:
                    dt = d
                    which = -2
            tp = np.inf
            wp = -1
            for q in range(n_pipe):
                if pnext[q] < tp:
                    tp = pnext[q]
                    wp = q
            if wp >= 0 and tp - now < dt:
                dt = tp - now
                which = wp
            if dsize > 0 and dk[0] - now < dt:
                dt = dk[0] - now
                which = -4
            if which == -3:
                status = DEADLOCK
                for slot in range(n_slot):
                    if slot_wait[slot]:
                        c = slot_cta[slot]
                        ph = cta_phase[c]
                        info[0] = c
                        info[1] = flag[ph]
                        info[2] = a[ph]
                        info[3] = fcount[flag[ph]]
                        break
                if info[0] < 0:  # CTAs left to run but none resident (cannot happen with occupancy >= 1)
                    info[0] = next_cta
                break
            if dt < 0.0:
                dt = 0.0
            if which >= 0:
                now = pnext[which]
            elif which == -4:
                now = dk[0]
            else:
                now = now + dt
            # ---- advance the shared resources' virtual time to `now` (the SM pipes lazily, below)
            if hsize > 0:
                Vh = hk[0] if which == -1 else Vh + rh * dt
            if lsize > 0:
                Vl = lk[0] if which == -2 else Vl + rl * dt
            # ---- complete the flows that have finished
            nr = 0
            while hsize > 0 and hk[0] <= Vh + REL_TOL * abs(Vh):
                slot, hsize = _heap_pop(hk, hv, hsize)
                c = slot_cta[slot]
                nr = _mark_ready(c, _flow_done(c, cta_lidx, cta_lpend, cta_pending), cta_inready, ready, nr)
            while lsize > 0 and lk[0] <= Vl + REL_TOL * abs(Vl):
                slot, lsize = _heap_pop(lk, lv, lsize)
                c = slot_cta[slot]
                nr = _mark_ready(c, _flow_done(c, cta_lidx, cta_lpend, cta_pending), cta_inready, ready, nr)
            while dsize > 0 and dk[0] <= now + REL_TOL * now:
                slot, dsize = _heap_pop(dk, dv, dsize)
                c = slot_cta[slot]
                cta_pending[c] -= 1
                nr = _mark_ready(c, cta_pending[c] == 0, cta_inready, ready, nr)
            tlim = now + REL_TOL * now
            for q in range(n_pipe):
                if pnext[q] <= tlim:
                    if q == which:
                        pV[q] = pmin[q]
                    else:
                        pV[q] += (now - plast[q]) / pn[q]
                    plast[q] = now
                    p = q // n_sm
                    s = q - p * n_sm
                    lim = pV[q] + REL_TOL * abs(pV[q])
                    m = np.inf
                    for slot in range(s * occ_max, s * occ_max + occ_max):
                        if slot_pipe[slot] == p:
                            if slot_fin[slot] <= lim:
                                slot_pipe[slot] = -1
                                pn[q] -= 1
                                c = slot_cta[slot]
                                cta_pending[c] -= 1
                                nr = _mark_ready(c, cta_pending[c] == 0, cta_inready, ready, nr)
                            elif slot_fin[slot] < m:
                                m = slot_fin[slot]
                    pmin[q] = m
                    pnext[q] = now + (m - pV[q]) * pn[q] if pn[q] > 0 else np.inf

        # ---- settle: advance ready CTAs, release waiters, dispatch, until nothing changes at `now`
        while True:
            if nr > 0:
                if nr == 1:
                    order = zero1
                else:
                    for i in range(nr):
                        rkey[i] = cta_sm[ready[i]] * n_cta + ready[i]
                    order = np.argsort(rkey[:nr])
                signalled = False
                for oi in range(nr):
                    c = ready[order[oi]]
                    cta_inready[c] = False
                    slot = cta_slot[c]
                    s = slot // occ_max
                    if st > 1:
                        # ---- pipelined CTA: producer (loads) and consumer (everything else), to a fixed point
                        end = cta_ptr[c + 1]
                        while True:
                            moved = False
                            # producer: the next load, if none is in flight and the window has room
                            if cta_lidx[c] < 0 and cta_ahead[c] < st:
                                P = cta_lp[c]
                                if P < end and kind[P] == LOAD:
                                    events += 1
                                    started = 0
                                    if a[P] > 0.0:
                                        hsize = _heap_push(hk, hv, hsize, Vh + a[P], slot)
                                        started += 1
                                    if b[P] > 0.0:
                                        lsize = _heap_push(lk, lv, lsize, Vl + b[P], slot)
                                        started += 1
                                    cta_ahead[c] += 1
                                    q = P + 1
                                    while q < end and (kind[q] == MMA or kind[q] == FMA):
                                        q += 1
                                    cta_lp[c] = q
                                    if started > 0:
                                        cta_lidx[c] = P
                                        cta_lpend[c] = started
                                    moved = True
                            # consumer
                            ph = cta_phase[c]
                            seg = False  # passed a fence: a new segment starts at cta_phase
                            adv = False  # finished a load group's phase: arrive at cta_phase
                            if cta_cbusy[c]:
                                if cta_pending[c] > 0:
                                    if moved:
                                        continue
                                    break
                                cta_cbusy[c] = False
                                cta_phase[c] = ph + 1
                                if kind[ph] == STORE:
                                    seg = True
                                else:
                                    adv = True
                            elif ph == end:
                                cta_end[c] = now
                                slot_cta[slot] = -1
                                sm_count[s] -= 1
                                done += 1
                                break
                            else:
                                kd = kind[ph]
                                if kd == LOAD:
                                    if ph < cta_lp[c] and cta_lidx[c] != ph:
                                        cta_phase[c] = ph + 1
                                        cta_open[c] = True
                                        adv = True
                                elif kd == MMA or kd == FMA:
                                    events += 1
                                    if a[ph] > 0.0:
                                        p = 0 if kd == MMA else 1
                                        slot_pipe[slot] = p
                                        slot_fin[slot] = _pipe_join(pV, plast, pn, pmin, pnext, p * n_sm + s, now, a[ph])
                                        cta_pending[c] = 1
                                        cta_cbusy[c] = True
                                    else:
                                        cta_phase[c] = ph + 1
                                        adv = True
                                elif kd == STORE:
                                    events += 1
                                    if a[ph] > 0.0:
                                        hsize = _heap_push(hk, hv, hsize, Vh + a[ph], slot)
                                        cta_pending[c] = 1
                                        cta_cbusy[c] = True
                                    else:
                                        cta_phase[c] = ph + 1
                                        seg = True
                                elif kd == SIGNAL:
                                    fcount[flag[ph]] += np.int64(a[ph])
                                    signalled = True
                                    events += 1
                                    cta_phase[c] = ph + 1
                                    seg = True
                                else:  # WAIT
                                    if fcount[flag[ph]] >= a[ph]:
                                        events += 1
                                        cta_phase[c] = ph + 1
                                        seg = True
                                    elif not slot_wait[slot]:
                                        slot_wait[slot] = True
                                        n_waiting += 1
                            if seg:  # after a fence: a fresh window, the leading compute as one group
                                m = cta_phase[c]
                                q = m
                                while q < end and (kind[q] == MMA or kind[q] == FMA):
                                    q += 1
                                cta_lp[c] = q
                                cta_open[c] = True
                                cta_ahead[c] += 1
                                adv = True
                            if adv:  # arriving at a load, a fence or the end closes the open group
                                m = cta_phase[c]
                                if cta_open[c] and (m == end or (kind[m] != MMA and kind[m] != FMA)):
                                    cta_open[c] = False
                                    cta_ahead[c] -= 1
                                moved = True
                            if not moved:
                                break
                        continue
                    while True:
                        ph = cta_phase[c]
                        if ph == cta_ptr[c + 1]:
                            cta_end[c] = now
                            slot_cta[slot] = -1
                            sm_count[s] -= 1
                            done += 1
                            break
                        kd = kind[ph]
                        if kd == SIGNAL:
                            fcount[flag[ph]] += np.int64(a[ph])
                            signalled = True
                            cta_phase[c] = ph + 1
                            events += 1
                            continue
                        if kd == WAIT:
                            if fcount[flag[ph]] >= a[ph]:
                                cta_phase[c] = ph + 1
                                events += 1
                                continue
                            slot_wait[slot] = True
                            n_waiting += 1
                            break
                        cta_phase[c] = ph + 1
                        events += 1
                        started = 0
                        if kd == LOAD or kd == STORE:
                            if a[ph] > 0.0:
                                hsize = _heap_push(hk, hv, hsize, Vh + a[ph], slot)
                                started += 1
                            if kd == LOAD and b[ph] > 0.0:
                                lsize = _heap_push(lk, lv, lsize, Vl + b[ph], slot)
                                started += 1
                        elif kd == DELAY:
                            if a[ph] > 0.0:
                                dsize = _heap_push(dk, dv, dsize, now + a[ph], slot)
                                started = 1
                        else:  # MMA or FMA
                            if a[ph] > 0.0:
                                p = 0 if kd == MMA else 1
                                slot_pipe[slot] = p
                                slot_fin[slot] = _pipe_join(pV, plast, pn, pmin, pnext, p * n_sm + s, now, a[ph])
                                started = 1
                        if started > 0:
                            cta_pending[c] = started
                            break
                nr = 0
                if signalled and n_waiting > 0:
                    for slot in range(n_slot):
                        if slot_wait[slot]:
                            c = slot_cta[slot]
                            ph = cta_phase[c]
                            if fcount[flag[ph]] >= a[ph]:
                                slot_wait[slot] = False
                                n_waiting -= 1
                                if st == 1:
                                    cta_phase[c] = ph + 1
                                    events += 1
                                # (a pipelined CTA passes its wait itself, as a fence)
                                cta_inready[c] = True
                                ready[nr] = c
                                nr += 1
                if nr > 0:
                    continue
            # dispatch the next CTAs in launch order, each to the SM with the most free slots
            while next_cta < last_cta and nr < n_slot:
                best = -1
                best_n = occ
                for s in range(n_sm):
                    if sm_count[s] < best_n:
                        best_n = sm_count[s]
                        best = s
                        if best_n == 0:
                            break
                if best < 0:
                    break
                slot = best * occ_max
                while slot_cta[slot] >= 0:
                    slot += 1
                c = next_cta
                next_cta += 1
                slot_cta[slot] = c
                slot_pipe[slot] = -1
                slot_wait[slot] = False
                sm_count[best] += 1
                cta_slot[c] = slot
                cta_sm[c] = best
                cta_start[c] = now
                if st > 1:  # the first segment: as after a fence
                    q = cta_phase[c]
                    while q < cta_ptr[c + 1] and (kind[q] == MMA or kind[q] == FMA):
                        q += 1
                    cta_lp[c] = q
                    cta_open[c] = True
                    cta_ahead[c] = 1
                    m = cta_phase[c]
                    if m == cta_ptr[c + 1] or (kind[m] != MMA and kind[m] != FMA):
                        cta_open[c] = False
                        cta_ahead[c] = 0
                cta_inready[c] = True
                ready[nr] = c
                nr += 1
            if nr == 0:
                break

        if kernel_active and done == last_cta - kernel_ptr[k]:
            kernel_end[k] = now
            k += 1
            kernel_active = False
            next_kernel_time = now + launch_cycles

    return status, info, cta_sm, cta_start, cta_end, kernel_start, kernel_end, events
