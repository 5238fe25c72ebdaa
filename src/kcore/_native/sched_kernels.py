"""Numba kernels for the scheduler's scoring (contract: ``kcore.scheduler.core``).

All arrays are int64 unless noted. A node table is ``cols`` (rows of
``kcore.scheduler.nodetable``: POD_CAP, POD_CNT, NZ_CPU, NZ_MEM, then
allocatable/requested per resource) over ``n`` node columns. A pod shape is a
packed vector ``pv`` (layout below) plus ``st``, its per-node static arrays:

    st[ST_OK]    1 if every label/taint/name filter passes
    st[ST_NORM]  raw score normalised forward  (NodeAffinity preferences)
    st[ST_RNORM] raw score normalised reversed (PreferNoSchedule taints)
    st[ST_PLAIN] score used as is (NodeLabel)

A node's total is -1 when infeasible, else the weighted sum of the plugin
scores with kube's integer formulas. Two implementations compute it: a
column-at-a-time full scan (``score_all``: vectorisable loops, float division
where it is provably exact) and a per-row one (``row_total``: plain integer
arithmetic) used after a bind or a pod event moves one row. They agree
exactly; the scheduler's tests check both against the pure-Python reference.

Float exactness: for 0 <= x <= 100*a and 0 < a < 2**46, int(float(x) / float(a))
equals x // a. If a divides x the quotient is representable and exact;
otherwise the true quotient sits at least 1/a below the next integer, while
the rounding error is at most 100 * 2**-53 < 1/a. The scheduler sets the
EXACT flag only when every allocatable value is below 2**46 (about 70 TB).
"""
from __future__ import annotations

import numpy as np
from numba import njit

_OPTS = {"cache": True, "error_model": "numpy", "nogil": True}

POD_CAP, POD_CNT, ZERO = 0, 1, 4
ST_OK, ST_NORM, ST_RNORM, ST_PLAIN = 0, 1, 2, 3

# pv layout
PV_STRATEGY, PV_W_FIT, PV_W_BAL, PV_W_NORM, PV_W_RNORM, PV_W_PLAIN = 0, 1, 2, 3, 4, 5
PV_FLAGS, PV_NFIT, PV_NSC, PV_NBAL, PV_TERMS = 6, 7, 8, 9, 10
F_NORM, F_RNORM, F_PLAIN, F_EXACT, F_PODS = 1, 2, 4, 8, 16
EXACT_LIMIT = 2**46

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)


@njit(**_OPTS)
def draw(seed, counter, k):
    """Tie-break draw number ``counter``: splitmix64(seed + (counter+1)*golden) mod k."""
    z = np.uint64(seed) + np.uint64(counter + 1) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _C1
    z = (z ^ (z >> np.uint64(27))) * _C2
    z = z ^ (z >> np.uint64(31))
    return np.int64(z % np.uint64(k))


# ---- per row ----------------------------------------------------------------------

@njit(**_OPTS)
def row_feasible(cols, st, pv, i):
    if st[ST_OK, i] == 0:
        return False
    if (pv[PV_FLAGS] & F_PODS) != 0 and cols[POD_CNT, i] + 1 > cols[POD_CAP, i]:
        return False
    off = PV_TERMS
    for _t in range(pv[PV_NFIT]):
        if pv[off + 2] > cols[pv[off], i] - cols[pv[off + 1], i]:
            return False
        off += 3
    return True


@njit(**_OPTS)
def row_fit_score(cols, pv, i):
    off = PV_TERMS + 3 * pv[PV_NFIT]
    most = pv[PV_STRATEGY] == 1
    total = 0
    weights = 0
    for _t in range(pv[PV_NSC]):
        a = cols[pv[off], i]
        q = cols[pv[off + 1], i] + pv[off + 2]
        w = pv[off + 3]
        off += 4
        if a == 0:
            continue
        if most:
            q = min(q, a)
            s = q * 100 // a
        else:
            s = 0 if q > a else (a - q) * 100 // a
        total += s * w
        weights += w
    if weights == 0:
        return 0
    return total // weights


@njit(**_OPTS)
def row_balanced_score(cols, pv, i):
    off = PV_TERMS + 3 * pv[PV_NFIT] + 4 * pv[PV_NSC]
    nb = pv[PV_NBAL]
    fr = np.empty(nb, np.float64)
    m = 0
    total = 0.0
    for _t in range(nb):
        a = cols[pv[off], i]
        q = cols[pv[off + 1], i] + pv[off + 2]
        off += 3
        if a == 0:
            continue
        f = np.float64(q) / np.float64(a)
        f = min(f, 1.0)
        total += f
        fr[m] = f
        m += 1
    std = 0.0
    if m == 2:
        std = abs((fr[0] - fr[1]) / 2)
    elif m > 2:
        mean = total / m
        acc = 0.0
        for k in range(m):
            acc = acc + (fr[k] - mean) * (fr[k] - mean)
        std = np.sqrt(acc / m)
    return np.int64((1.0 - std) * 100.0)


@njit(**_OPTS)
def row_total(cols, st, pv, i, norm_max, rnorm_max):
    """The node's total score for this shape, or -1 if it is infeasible."""
    if not row_feasible(cols, st, pv, i):
        return -1
    s = 0
    if pv[PV_W_FIT] != 0:
        s += pv[PV_W_FIT] * row_fit_score(cols, pv, i)
    if pv[PV_W_BAL] != 0:
        s += pv[PV_W_BAL] * row_balanced_score(cols, pv, i)
    if pv[PV_W_PLAIN] != 0:
        s += pv[PV_W_PLAIN] * st[ST_PLAIN, i]
    if norm_max > 0:
        s += pv[PV_W_NORM] * (100 * st[ST_NORM, i] // norm_max)
    if rnorm_max > 0:
        s += pv[PV_W_RNORM] * (100 - 100 * st[ST_RNORM, i] // rnorm_max)
    else:
        s += pv[PV_W_RNORM] * 100
    return s


# ---- whole table -------------------------------------------------------------------

@njit(**_OPTS)
def score_all(cols, n, st, pv, blocked, out, fbuf, ibuf):
    """Score every row into ``out``; returns (best, #best, norm max, #, rnorm max, #)."""
    feas = ibuf[0]
    base = ibuf[1]
    exact = (pv[PV_FLAGS] & F_EXACT) != 0
    nfit = pv[PV_NFIT]
    nsc = pv[PV_NSC]
    nb = pv[PV_NBAL]
    wf = pv[PV_W_FIT]
    wb = pv[PV_W_BAL]
    if exact and nfit <= 2 and nsc <= 2 and (nb == 2 or nb == 0 or wb == 0):
        _fused(cols, n, st, pv, feas, base)
        for k in range(blocked.shape[0]):
            feas[blocked[k]] = 0
        return _finish(n, st, pv, feas, base, out)
    okrow = st[ST_OK]
    if (pv[PV_FLAGS] & F_PODS) != 0:
        cap = cols[POD_CAP]
        cnt = cols[POD_CNT]
        for i in range(n):
            feas[i] = 1 if (okrow[i] != 0) & (cnt[i] < cap[i]) else 0
    else:
        for i in range(n):
            feas[i] = 1 if okrow[i] != 0 else 0
    for i in range(n):
        base[i] = 0
    off = PV_TERMS
    for _t in range(pv[PV_NFIT]):
        ca = cols[pv[off]]
        cr = cols[pv[off + 1]]
        v = pv[off + 2]
        off += 3
        for i in range(n):
            feas[i] = feas[i] if v <= ca[i] - cr[i] else 0
    for k in range(blocked.shape[0]):
        feas[blocked[k]] = 0

    if wf != 0 and nsc > 0:
        if exact:
            num = fbuf[0]
            ws = fbuf[1]
            for i in range(n):
                num[i] = 0.0
                ws[i] = 0.0
            most = pv[PV_STRATEGY] == 1
            for _t in range(nsc):
                ca = cols[pv[off]]
                cr = cols[pv[off + 1]]
                v = pv[off + 2]
                fw = np.float64(pv[off + 3])
                off += 4
                if most:
                    for i in range(n):
                        a = ca[i]
                        q = cr[i] + v
                        d = min(a, q)
                        pos = a > 0
                        fa = np.float64(a) if pos else 1.0
                        s = np.float64(np.int64(np.float64(d) * 100.0 / fa))
                        num[i] += s * fw if pos else 0.0
                        ws[i] += fw if pos else 0.0
                else:
                    for i in range(n):
                        a = ca[i]
                        q = cr[i] + v
                        d = a - q if a > q else 0
                        pos = a > 0
                        fa = np.float64(a) if pos else 1.0
                        s = np.float64(np.int64(np.float64(d) * 100.0 / fa))
                        num[i] += s * fw if pos else 0.0
                        ws[i] += fw if pos else 0.0
            for i in range(n):
                w = ws[i]
                fit = np.int64(num[i] / (w if w > 0.0 else 1.0))
                base[i] += wf * fit
        else:
            off += 4 * nsc
            for i in range(n):
                base[i] += wf * row_fit_score(cols, pv, i)
    else:
        off += 4 * nsc

    if wb != 0 and nb == 2:
        a0c = cols[pv[off]]
        q0c = cols[pv[off + 1]]
        v0 = pv[off + 2]
        a1c = cols[pv[off + 3]]
        q1c = cols[pv[off + 4]]
        v1 = pv[off + 5]
        for i in range(n):
            a0 = a0c[i]
            a1 = a1c[i]
            fa0 = np.float64(a0) if a0 > 0 else 1.0
            fa1 = np.float64(a1) if a1 > 0 else 1.0
            f0 = np.float64(q0c[i] + v0) / fa0
            f1 = np.float64(q1c[i] + v1) / fa1
            f0 = min(f0, 1.0)
            f1 = min(f1, 1.0)
            std = abs((f0 - f1) / 2) if (a0 > 0) & (a1 > 0) else 0.0
            base[i] += wb * np.int64((1.0 - std) * 100.0)
    elif wb != 0 and nb > 0:
        for i in range(n):
            base[i] += wb * row_balanced_score(cols, pv, i)

    wp = pv[PV_W_PLAIN]
    if wp != 0 and (pv[PV_FLAGS] & F_PLAIN) != 0:
        plain = st[ST_PLAIN]
        for i in range(n):
            base[i] += wp * plain[i]
    return _finish(n, st, pv, feas, base, out)


@njit(**_OPTS)
def _fused(cols, n, st, pv, feas, base):
    """One pass for the common shape (<= 2 fit terms, <= 2 scored resources,
    balanced over 2 or none, exact floats): feasibility and fit+balanced+plain."""
    okrow = st[ST_OK]
    plain = st[ST_PLAIN]
    wp = pv[PV_W_PLAIN] if (pv[PV_FLAGS] & F_PLAIN) != 0 else 0
    podcheck = (pv[PV_FLAGS] & F_PODS) != 0
    cap = cols[POD_CAP]
    cnt = cols[POD_CNT]
    nfit = pv[PV_NFIT]
    off = PV_TERMS
    f0a, f0r, f0v = ZERO, ZERO, 0
    f1a, f1r, f1v = ZERO, ZERO, 0
    if nfit >= 1:
        f0a, f0r, f0v = pv[off], pv[off + 1], pv[off + 2]
    if nfit >= 2:
        f1a, f1r, f1v = pv[off + 3], pv[off + 4], pv[off + 5]
    off += 3 * nfit
    nsc = pv[PV_NSC]
    s0a, s0r, s0v, s0w = ZERO, ZERO, 0, 0
    s1a, s1r, s1v, s1w = ZERO, ZERO, 0, 0
    if nsc >= 1:
        s0a, s0r, s0v, s0w = pv[off], pv[off + 1], pv[off + 2], pv[off + 3]
    if nsc >= 2:
        s1a, s1r, s1v, s1w = pv[off + 4], pv[off + 5], pv[off + 6], pv[off + 7]
    off += 4 * nsc
    wf = pv[PV_W_FIT] if nsc > 0 else 0
    wb = pv[PV_W_BAL]
    nb = pv[PV_NBAL]
    b0a, b0r, b0v = ZERO, ZERO, 0
    b1a, b1r, b1v = ZERO, ZERO, 0
    if nb == 2:
        b0a, b0r, b0v = pv[off], pv[off + 1], pv[off + 2]
        b1a, b1r, b1v = pv[off + 3], pv[off + 4], pv[off + 5]
    else:
        wb = 0
    most = pv[PV_STRATEGY] == 1
    cf0a, cf0r, cf1a, cf1r = cols[f0a], cols[f0r], cols[f1a], cols[f1r]
    cs0a, cs0r, cs1a, cs1r = cols[s0a], cols[s0r], cols[s1a], cols[s1r]
    cb0a, cb0r, cb1a, cb1r = cols[b0a], cols[b0r], cols[b1a], cols[b1r]
    fw0 = np.float64(s0w)
    fw1 = np.float64(s1w)
    # 1/weight-sum for each combination of present resources; with weights
    # below 1e6, int(num * r + 1e-9) == num // ws exactly (the rounding error,
    # < 1e-13, is far below both 1e-9 and the 1/ws gap to the next integer)
    r0 = 1.0 / fw0 if s0w > 0 else 0.0
    r1 = 1.0 / fw1 if s1w > 0 else 0.0
    r01 = 1.0 / (fw0 + fw1) if s0w + s1w > 0 else 0.0
    for i in range(n):
        ok = (okrow[i] != 0) & (f0v <= cf0a[i] - cf0r[i]) & (f1v <= cf1a[i] - cf1r[i])
        if podcheck:
            ok = ok & (cnt[i] < cap[i])
        a0 = cs0a[i]
        q0 = cs0r[i] + s0v
        a1 = cs1a[i]
        q1 = cs1r[i] + s1v
        if most:
            d0 = min(a0, q0)
            d1 = min(a1, q1)
        else:
            d0 = a0 - q0 if a0 > q0 else 0
            d1 = a1 - q1 if a1 > q1 else 0
        p0 = a0 > 0
        p1 = a1 > 0
        x0 = np.float64(np.int64(np.float64(d0) * 100.0 / (np.float64(a0) if p0 else 1.0)))
        x1 = np.float64(np.int64(np.float64(d1) * 100.0 / (np.float64(a1) if p1 else 1.0)))
        num = (x0 * fw0 if p0 else 0.0) + (x1 * fw1 if p1 else 0.0)
        r = (r01 if p1 else r0) if p0 else (r1 if p1 else 0.0)
        fit = np.int64(num * r + 1e-9)
        ba0 = cb0a[i]
        ba1 = cb1a[i]
        g0 = np.float64(cb0r[i] + b0v) / (np.float64(ba0) if ba0 > 0 else 1.0)
        g1 = np.float64(cb1r[i] + b1v) / (np.float64(ba1) if ba1 > 0 else 1.0)
        g0 = min(g0, 1.0)
        g1 = min(g1, 1.0)
        std = abs((g0 - g1) / 2) if (ba0 > 0) & (ba1 > 0) else 0.0
        ba = np.int64((1.0 - std) * 100.0)
        feas[i] = 1 if ok else 0
        base[i] = wf * fit + wb * ba + wp * plain[i]


@njit(**_OPTS)
def _finish(n, st, pv, feas, base, out):
    """Normalised scores over the feasible rows, totals into ``out``, best and count.

    The maxima's multiplicities are only needed (and only counted) when the
    raw scores are not all zero."""
    rawn = st[ST_NORM]
    rawr = st[ST_RNORM]
    nm = 0
    nmc = 0
    if (pv[PV_FLAGS] & F_NORM) != 0:
        for i in range(n):
            v = rawn[i] if feas[i] != 0 else 0
            nm = max(nm, v)
        for i in range(n):
            nmc += feas[i] if rawn[i] == nm else 0
    rm = 0
    rmc = 0
    if (pv[PV_FLAGS] & F_RNORM) != 0:
        for i in range(n):
            v = rawr[i] if feas[i] != 0 else 0
            rm = max(rm, v)
        for i in range(n):
            rmc += feas[i] if rawr[i] == rm else 0

    wn = pv[PV_W_NORM]
    wr = pv[PV_W_RNORM]
    if nm > 0 and wn != 0:
        fnm = np.float64(nm)
        for i in range(n):
            base[i] += wn * np.int64(np.float64(100 * rawn[i]) / fnm)
    const = 0
    if rm > 0:
        frm = np.float64(rm)
        for i in range(n):
            base[i] += wr * (100 - np.int64(np.float64(100 * rawr[i]) / frm))
    else:
        const = wr * 100

    best = -1
    for i in range(n):
        s = base[i] + const if feas[i] != 0 else -1
        out[i] = s
        best = max(best, s)
    cnt = 0
    for i in range(n):
        cnt += 1 if out[i] == best else 0
    if best < 0:
        cnt = 0
    return best, cnt, nm, nmc, rm, rmc


@njit(**_OPTS)
def kth_best_row(out, n, best, j):
    """The row of the j-th (0-based, in row order) node scoring ``best``."""
    for i in range(n):
        if out[i] == best:
            if j == 0:
                return i
            j -= 1
    return -1


@njit(**_OPTS)
def charge(cols, row, usage, sign):
    for k in range(usage.shape[0]):
        cols[usage[k, 0], row] += sign * usage[k, 1]


@njit(**_OPTS)
def pick_one(cols, n, st, pv, blocked, out, fbuf, ibuf, seed, counter, usage, log, log_len):
    """Exhaustive path: score all, choose among the best, reserve (if ``usage`` has rows).

    Returns (row or -1, counter, log_len, best, #best)."""
    best, cnt, _nm, _nmc, _rm, _rmc = score_all(cols, n, st, pv, blocked, out, fbuf, ibuf)
    if best < 0:
        return -1, counter, log_len, best, cnt
    j = 0
    if cnt > 1:
        j = draw(seed, counter, cnt)
        counter += 1
    row = kth_best_row(out, n, best, j)
    if usage.shape[0] > 0:
        charge(cols, row, usage, 1)
        log[log_len] = row
        log_len += 1
    return row, counter, log_len, best, cnt


# ---- max segment tree over rows (max, count of max) ----------------------------------

@njit(**_OPTS)
def _pull(mx, ct, v):
    a = 2 * v
    b = a + 1
    if mx[a] > mx[b]:
        mx[v] = mx[a]
        ct[v] = ct[a]
    elif mx[a] < mx[b]:
        mx[v] = mx[b]
        ct[v] = ct[b]
    else:
        mx[v] = mx[a]
        ct[v] = ct[a] + ct[b]


@njit(**_OPTS)
def tree_build(score, n, mx, ct, size):
    for i in range(size):
        mx[size + i] = score[i] if i < n else -1
        ct[size + i] = 1
    for v in range(size - 1, 0, -1):
        _pull(mx, ct, v)


@njit(**_OPTS)
def tree_set(mx, ct, size, i, value):
    v = size + i
    mx[v] = value
    v >>= 1
    while v >= 1:
        _pull(mx, ct, v)
        v >>= 1


@njit(**_OPTS)
def tree_kth(mx, ct, size, j):
    """Row of the j-th leaf (in row order) holding the maximum."""
    best = mx[1]
    v = 1
    while v < size:
        a = 2 * v
        if mx[a] == best:
            if j < ct[a]:
                v = a
                continue
            j -= ct[a]
        v = a + 1
    return v - size


@njit(**_OPTS)
def build_state(cols, n, st, pv, score, fbuf, ibuf, mx, ct, size, norm):
    empty = np.empty(0, np.int64)
    _b, _c, nm, nmc, rm, rmc = score_all(cols, n, st, pv, empty, score, fbuf, ibuf)
    norm[0] = nm
    norm[1] = nmc
    norm[2] = rm
    norm[3] = rmc
    tree_build(score, n, mx, ct, size)


@njit(**_OPTS)
def _apply_row(cols, st, pv, score, mx, ct, size, norm, row):
    """Re-score one moved row; returns False when the normalisation maxima moved
    (every score may change: the caller rebuilds)."""
    old = score[row]
    new = row_total(cols, st, pv, row, norm[0], norm[2])
    if old == new:
        return True
    ok = True
    if old >= 0 and new < 0:
        if st[ST_NORM, row] == norm[0]:
            norm[1] -= 1
        if st[ST_RNORM, row] == norm[2]:
            norm[3] -= 1
        if (norm[0] > 0 and norm[1] == 0) or (norm[2] > 0 and norm[3] == 0):
            ok = False
    elif old < 0 and new >= 0:
        r1 = st[ST_NORM, row]
        r2 = st[ST_RNORM, row]
        if r1 > norm[0] or r2 > norm[2]:
            ok = False
        if r1 == norm[0]:
            norm[1] += 1
        if r2 == norm[2]:
            norm[3] += 1
    score[row] = new
    tree_set(mx, ct, size, row, new)
    return ok


@njit(**_OPTS)
def replay(cols, n, st, pv, score, mx, ct, size, norm, log, start, end):
    """Bring a cached shape up to date with the rows logged in [start, end).
    Returns 0, or 1 if the caller must rebuild."""
    for k in range(start, end):
        row = log[k]
        if row < 0 or row >= n:
            continue
        if not _apply_row(cols, st, pv, score, mx, ct, size, norm, row):
            return 1
    return 0


@njit(**_OPTS)
def assign(cols, n, st, pv, score, mx, ct, size, norm, m, seed, counter, usage,
           log, log_len, rows_out):
    """Place up to ``m`` pods of one cached shape, one after another.

    Each pod takes the j-th best row (j drawn as in ``pick_one``), is charged
    there, and only that row is re-scored. Returns (placed, counter, log_len,
    status): status 0 = all placed, 1 = no feasible node left, 2 = rebuild
    needed before the next pod."""
    for t in range(m):
        best = mx[1]
        if best < 0:
            return t, counter, log_len, 1
        cnt = ct[1]
        j = 0
        if cnt > 1:
            j = draw(seed, counter, cnt)
            counter += 1
        row = tree_kth(mx, ct, size, j)
        rows_out[t] = row
        charge(cols, row, usage, 1)
        log[log_len] = row
        log_len += 1
        if not _apply_row(cols, st, pv, score, mx, ct, size, norm, row):
            return t + 1, counter, log_len, 2
    return m, counter, log_len, 0
