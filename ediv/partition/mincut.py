"""MinCut: balance VMs by host capacity while keeping nets on as few hosts as possible.

What it optimises, in this order (lexicographically), subject to the constraints below:

1. the number of cut nets: nets whose VMs land on more than one host (each becomes a
   segment, i.e. a VLAN or VXLAN between hosts);
2. the total span ``sum over nets of (hosts the net lands on - 1)`` (fewer tunnel peers);
3. the concentration ``sum over nets and hosts of count(net, host)**2``, a tie-breaker
   that pulls a VM towards the host holding most of its nets' VMs, so that a net split
   half and half can drift to one side over several moves.

Constraints: VMs in ``placed`` stay where they are; a host never gets more than
``max_vhost`` VMs (0 = unlimited) nor, when ``Host.mem`` is set, VMs whose memory (VNUML
``<mem>``, default 64 MB) adds up to more than ``mem`` MB; each host's VM count stays,
unless placed VMs or memory force otherwise, within a balance tolerance of its target:
``max(10 % of target, 1 VM)`` either side, capped by ``max_vhost``.

Targets: host i's share of the VMs is proportional to ``cpu_i * (1 - min(load_i, 0.9))``
(a busy host still counts a tenth of its speed), capped by ``max_vhost`` and by
``mem_i / average VM memory``; what a capped host cannot take is shared among the others
(water filling); the integer targets use the largest-remainder method.

Method: two starting partitions, each refined, the better kept (multi-start, as
graph partitioners do): (a) region growing: one region per host (hosts holding placed VMs
first), grown breadth-first over the VM-net graph from the host's placed VMs or from the
previous region's frontier, up to the host's target; (b) contiguous blocks in VNUML order,
up to each target (authors tend to write the VMs of a site together). In (a) VMs on no
net come last and fill what the regions leave.
Refinement, Fiduccia-Mattheyses style: visit the VMs in
VNUML order and move each to the host (among those its nets already reach) that improves
the objective most without breaking a constraint; when balance blocks the move, swap it
with a VM of that host (one on the same nets, or one on no net) if the pair improves the
objective; then try moving all of a cut net's movable VMs onto one of its hosts at once.
Passes repeat until nothing improves (at most ``MAX_PASSES``). Every step iterates in VM,
net and cluster order, so the result is deterministic. Cost: O(passes x interfaces x
hosts a VM's nets reach); about a second for 10,000 VMs, 2,000 nets, 64 hosts.

Not guaranteed: an optimum (the problem is NP-hard), nor never cutting more nets than
RoundRobin on tiny, dense scenarios whose balance tolerance is one VM.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from ediv.cluster import Host
from ediv.errors import PlanError
from ediv.partition.api import PartitionResult
from ediv.partition.common import Placement, vm_mem_mb
from ediv.scenario.model import Scenario

BALANCE = 0.10
MIN_WEIGHT = 0.1
MAX_PASSES = 12
SWAP_CANDIDATES = 16
ZERO = (0, 0, 0)


def targets(hosts: Sequence[Host], vms: int, avg_mem: float) -> tuple[list[float], list[int]]:
    """(real targets, integer targets) of VMs per host; see the module docstring."""
    n = len(hosts)
    weights = [max(h.cpu, 0) * (1.0 - min(max(h.load, 0.0), 1.0 - MIN_WEIGHT)) for h in hosts]
    if sum(weights) <= 0:
        weights = [1.0] * n
    caps = []
    for h in hosts:
        cap = float(h.max_vhost) if h.max_vhost > 0 else math.inf
        if h.mem > 0:
            cap = min(cap, math.floor(h.mem / avg_mem))
        caps.append(cap)
    real = [0.0] * n
    free = [i for i in range(n) if weights[i] > 0]
    left = float(vms)
    while free and left > 1e-9:
        total = sum(weights[i] for i in free)
        share = {i: left * weights[i] / total for i in free}
        capped = [i for i in free if real[i] + share[i] >= caps[i]]
        if not capped:
            for i in free:
                real[i] += share[i]
            left = 0.0
            break
        for i in capped:
            left -= caps[i] - real[i]
            real[i] = caps[i]
        free = [i for i in free if i not in capped]
    whole = [math.floor(t) for t in real]
    rest = vms - sum(whole)
    by_remainder = sorted(range(n), key=lambda i: (-(real[i] - whole[i]), i))
    for i in by_remainder:
        if rest <= 0:
            break
        if whole[i] + 1 <= caps[i]:
            whole[i] += 1
            rest -= 1
    i = 0
    while rest > 0 and i < n:  # targets short of V only when caps bind; fill any room
        if whole[i] + 1 <= caps[i]:
            whole[i] += 1
            rest -= 1
        else:
            i += 1
    return real, whole


class MinCut:
    """Fewest nets spanning hosts, VMs balanced by cpu, load, memory and max_vhost."""

    name = "MinCut"
    description = "fewest nets spanning hosts, balanced by cpu, load, memory and max_vhost"

    def partition(
        self, scenario: Scenario, hosts: Sequence[Host], placed: Mapping[str, str]
    ) -> PartitionResult:
        state = Placement(scenario, hosts, placed)
        return _MinCutRun(scenario, state).run()


class _MinCutRun:
    def __init__(self, scenario: Scenario, state: Placement):
        self.state = state
        self.hosts = state.hosts
        order = state.order
        self.names = [v.name for v in order]
        self.V = len(order)
        self.H = len(self.hosts)
        net_index: dict[str, int] = {n.name: i for i, n in enumerate(scenario.nets)}
        for v in order:
            for net in v.nets:
                net_index.setdefault(net, len(net_index))
        self.vm_nets = [[net_index[net] for net in v.nets] for v in order]
        self.members: list[list[int]] = [[] for _ in net_index]
        for vi, nets in enumerate(self.vm_nets):
            for ni in nets:
                self.members[ni].append(vi)
        self.mem = [vm_mem_mb(v, scenario) for v in order]
        self.memcap = [h.mem if h.mem > 0 else math.inf for h in self.hosts]
        self.fixed = [name in state.allocation for name in self.names]
        self.reset()

    def reset(self) -> None:
        """Back to only the placed VMs assigned."""
        self.assign = [-1] * self.V
        self.hcount = [0] * self.H
        self.hmem = [0] * self.H
        self.cnt: list[dict[int, int]] = [{} for _ in self.members]
        self.loose: list[set[int]] = [set() for _ in self.hosts]  # movable VMs on no net
        for vi, name in enumerate(self.names):
            if self.fixed[vi]:
                self._add(vi, self.state.index[self.state.allocation[name]])

    # -- bookkeeping

    def _add(self, v: int, h: int) -> None:
        self.assign[v] = h
        if not self.vm_nets[v] and not self.fixed[v]:
            self.loose[h].add(v)
        self.hcount[h] += 1
        self.hmem[h] += self.mem[v]
        for n in self.vm_nets[v]:
            c = self.cnt[n]
            c[h] = c.get(h, 0) + 1

    def _remove(self, v: int) -> None:
        h = self.assign[v]
        self.assign[v] = -1
        self.loose[h].discard(v)
        self.hcount[h] -= 1
        self.hmem[h] -= self.mem[v]
        for n in self.vm_nets[v]:
            c = self.cnt[n]
            if c[h] == 1:
                del c[h]
            else:
                c[h] -= 1

    def fits(self, v: int, h: int) -> bool:
        return self.hcount[h] + 1 <= self.upper[h] and self.hmem[h] + self.mem[v] <= self.memcap[h]

    # -- the run

    def run(self) -> PartitionResult:
        self.check_memory()
        avg = sum(self.mem) / self.V if self.V else 64.0
        real, self.target = targets(self.hosts, self.V, avg)
        self.lower = []
        self.upper = []
        for i, h in enumerate(self.hosts):
            tol = max(BALANCE * real[i], 1.0)
            limit = h.max_vhost if h.max_vhost > 0 else math.inf
            self.lower.append(max(0, math.ceil(real[i] - tol)))
            self.upper.append(min(limit, max(self.target[i], math.floor(real[i] + tol))))
        best: tuple[tuple[int, int, int], list[int]] | None = None
        for start in (self.grow_regions, self.blocks):
            self.reset()
            start()
            self.refine()
            score = self.objective(range(len(self.members)))
            if best is None or score > best[0]:
                best = (score, list(self.assign))
        if best is not None and best[1] != self.assign:
            self.reset()
            for v, h in enumerate(best[1]):
                if not self.fixed[v]:
                    self._add(v, h)
        allocation = dict(self.state.allocation)
        for v, name in enumerate(self.names):
            allocation[name] = self.hosts[self.assign[v]].name
        spanning = sum(1 for c in self.cnt if len(c) > 1)
        shared = sum(1 for m in self.members if len(m) > 1)
        notes = [f"MinCut: {spanning} of {shared} nets with 2 or more VMs span hosts"]
        return PartitionResult(allocation, notes)

    def check_memory(self) -> None:
        if any(h.mem <= 0 for h in self.hosts):
            return
        need = sum(self.mem)
        offer = sum(h.mem for h in self.hosts)
        if need > offer:
            raise PlanError(
                f"the cluster cannot hold the scenario: its {self.V} VMs need {need} MB, the "
                f"hosts offer {offer} MB (mem: "
                + ", ".join(f"{h.name} {h.mem}" for h in self.hosts)
                + ")"
            )

    def grow(self, h: int, queue: deque[int], net_seen: list[int], vm_seen: list[int]) -> None:
        """Breadth-first growth of host ``h``'s region from ``queue`` up to its target."""
        while queue and self.hcount[h] < self.target[h]:
            v = queue.popleft()
            if self.assign[v] < 0:
                if self.hmem[h] + self.mem[v] > self.memcap[h]:
                    continue  # left for a later host
                self._add(v, h)
            elif self.assign[v] != h:
                continue
            for n in self.vm_nets[v]:
                if net_seen[n] == h:
                    continue
                net_seen[n] = h
                for w in self.members[n]:
                    if self.assign[w] < 0 and vm_seen[w] != h:
                        vm_seen[w] = h
                        queue.append(w)

    def refine(self) -> None:
        for _ in range(MAX_PASSES):
            moved = self.vm_pass() + self.net_pass()
            if not moved:
                break

    def blocks(self) -> None:
        """Contiguous blocks in VNUML order up to each target, as WeightedRoundRobin deals
        them: scenario authors tend to write VMs of one site together."""
        h = 0
        for v in range(self.V):
            if self.fixed[v]:
                continue
            while h < self.H and self.hcount[h] >= self.target[h]:
                h += 1
            if h < self.H and self.hmem[h] + self.mem[v] <= self.memcap[h]:
                self._add(v, h)
        self.place_leftovers()

    def grow_regions(self) -> None:
        """Grow one region per host: first the hosts holding placed VMs, then the others,
        each in cluster order. A region starts from the host's placed VMs, else from the
        first unassigned VM on the previous region's frontier (so consecutive regions are
        neighbours and each takes one side of what is left), else
        from the first unassigned VM with a net in VNUML order. VMs on no net come last and
        go where targets are least met."""
        net_seen = [-1] * len(self.members)
        vm_seen = [-1] * self.V
        frontier: deque[int] = deque()
        cursor = 0
        placed_on: list[list[int]] = [[] for _ in range(self.H)]
        for v in range(self.V):
            if self.fixed[v]:
                placed_on[self.assign[v]].append(v)
        grow_order = [h for h in range(self.H) if placed_on[h]]
        grow_order += [h for h in range(self.H) if not placed_on[h]]
        for h in grow_order:
            queue = deque(placed_on[h])
            for v in queue:
                vm_seen[v] = h
            while self.hcount[h] < self.target[h]:
                if not queue:
                    seed = next((v for v in frontier if self.assign[v] < 0), -1)
                    if seed < 0:
                        while cursor < self.V and (
                            self.assign[cursor] >= 0 or not self.vm_nets[cursor]
                        ):
                            cursor += 1
                        if cursor == self.V:
                            break
                        seed = cursor
                    queue.append(seed)
                    vm_seen[seed] = h
                before = self.hcount[h]
                self.grow(h, queue, net_seen, vm_seen)
                if self.hcount[h] == before and not queue:
                    break  # nothing left that fits this host
            frontier = queue
        self.place_leftovers()

    def place_leftovers(self) -> None:
        """VMs no region or block could take, then VMs on no net (they fill gaps last), each
        to the host furthest below its target that has room."""
        deferred = [v for v in range(self.V) if self.assign[v] < 0 and self.vm_nets[v]]
        deferred += [v for v in range(self.V) if self.assign[v] < 0 and not self.vm_nets[v]]
        for v in deferred:
            room = [i for i in range(self.H) if self.fits(v, i)]
            if not room:  # past the balance tolerance: any host with room and memory
                room = [
                    i
                    for i in range(self.H)
                    if self.hcount[i] < self.state.limits[i]
                    and self.hmem[i] + self.mem[v] <= self.memcap[i]
                ]
            if not room:
                raise PlanError(
                    f"no host can take VM {self.names[v]} ({self.mem[v]} MB): "
                    + ", ".join(
                        f"{h.name} {self.hcount[i]} VMs/{self.hmem[i]} MB used"
                        for i, h in enumerate(self.hosts)
                    )
                )
            self._add(v, max(room, key=lambda i: (self.target[i] - self.hcount[i], -i)))

    # -- refinement

    def gains(self, v: int) -> dict[int, tuple[int, int, int]]:
        """Objective improvement (cut, span, concentration) of moving ``v`` to each host
        its nets reach."""
        a = self.assign[v]
        base = [0, 0, 0]
        extra: dict[int, list[int]] = {}
        for n in self.vm_nets[v]:
            c = self.cnt[n]
            lam = len(c)
            ca = c[a]
            lam_rm = lam - (ca == 1)
            cut0 = lam > 1
            # to a host the net does not reach yet
            lam2 = lam_rm + 1
            g_cut = cut0 - (lam2 > 1)
            g_lam = lam - lam2
            g_sq = 2 * (1 - ca)
            base[0] += g_cut
            base[1] += g_lam
            base[2] += g_sq
            for b, cb in c.items():
                if b == a:
                    continue
                e = extra.setdefault(b, [0, 0, 0])
                e[0] += (cut0 - (lam_rm > 1)) - g_cut
                e[1] += (lam - lam_rm) - g_lam
                e[2] += 2 * cb
        return {b: (base[0] + e[0], base[1] + e[1], base[2] + e[2]) for b, e in extra.items()}

    def vm_pass(self) -> int:
        moved = 0
        for v in range(self.V):
            if self.fixed[v]:
                continue
            if not any(len(self.cnt[n]) > 1 for n in self.vm_nets[v]):
                continue
            a = self.assign[v]
            gains = sorted(self.gains(v).items(), key=lambda it: (it[1], -it[0]), reverse=True)
            for b, gain in gains:
                if gain <= ZERO:
                    break
                if self.hcount[a] - 1 >= self.lower[a] and self.fits(v, b):
                    self._remove(v)
                    self._add(v, b)
                    moved += 1
                    break
                if self.swap(v, a, b, gain):
                    moved += 2
                    break
        return moved

    def swap(self, v: int, a: int, b: int, gain: tuple[int, int, int]) -> bool:
        """Move ``v`` from ``a`` to ``b`` and one VM of ``b`` back to ``a`` (counts stay) when
        the pair improves the objective: a VM of ``b`` on one of ``v``'s nets, or one on no
        net (free ballast)."""
        candidates: list[int] = []
        for n in self.vm_nets[v]:
            if b in self.cnt[n]:
                for w in self.members[n]:
                    if self.assign[w] == b and not self.fixed[w] and w not in candidates:
                        candidates.append(w)
                        if len(candidates) >= SWAP_CANDIDATES:
                            break
            if len(candidates) >= SWAP_CANDIDATES:
                break
        if self.loose[b]:
            candidates.append(min(self.loose[b]))
        if not candidates:
            return False
        self._remove(v)
        self._add(v, b)
        best, best_gain = -1, ZERO
        for w in candidates:
            if self.hmem[a] + self.mem[w] > self.memcap[a]:
                continue
            if self.hmem[b] > self.memcap[b] + self.mem[w]:
                continue
            g = self.gains(w).get(a, ZERO) if self.vm_nets[w] else ZERO
            total = (gain[0] + g[0], gain[1] + g[1], gain[2] + g[2])
            if total > best_gain:
                best, best_gain = w, total
        if best < 0:
            self._remove(v)
            self._add(v, a)
            return False
        self._remove(best)
        self._add(best, a)
        return True

    def objective(self, nets: Iterable[int]) -> tuple[int, int, int]:
        cut = span = sq = 0
        for n in nets:
            c = self.cnt[n]
            cut += len(c) > 1
            span += len(c) - 1
            sq += sum(x * x for x in c.values())
        return (-cut, -span, sq)

    def net_pass(self) -> int:
        """Move all movable VMs of a cut net to one of its hosts when that helps."""
        moved = 0
        for n, c in enumerate(self.cnt):
            if len(c) < 2:
                continue
            for b in sorted(c, key=lambda h: (-c[h], h)):
                group = [v for v in self.members[n] if self.assign[v] != b]
                if any(self.fixed[v] for v in group):
                    continue
                if not self.group_fits(group, b):
                    continue
                touched = {m for v in group for m in self.vm_nets[v]}
                before = self.objective(touched)
                origin = [(v, self.assign[v]) for v in group]
                for v in group:
                    self._remove(v)
                    self._add(v, b)
                if self.objective(touched) > before:
                    moved += len(group)
                    break
                for v, h in origin:
                    self._remove(v)
                    self._add(v, h)
        return moved

    def group_fits(self, group: list[int], b: int) -> bool:
        leaving: dict[int, int] = {}
        mem = 0
        for v in group:
            leaving[self.assign[v]] = leaving.get(self.assign[v], 0) + 1
            mem += self.mem[v]
        if self.hcount[b] + len(group) > self.upper[b] or self.hmem[b] + mem > self.memcap[b]:
            return False
        return all(self.hcount[h] - k >= self.lower[h] for h, k in leaving.items())
