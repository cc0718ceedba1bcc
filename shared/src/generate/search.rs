//! The per-layout search: draws one wall layout and up to `pair_tries` start/goal pairs
//! from one random stream, and finds the first pair whose shortest path is long enough.
//!
//! Everything here is an exact shortcut for "run BFS for every pair": each filter only
//! rejects pairs whose distance is provably below `min_moves` and only accepts pairs
//! whose distance is provably at least `min_moves`, so the outcome for a stream is the
//! same as the naive procedure's (a test checks this against `maze::distances_from`).

use rand_chacha::rand_core::RngCore;

/// Distance of a cell a BFS did not reach.
const INF: u32 = u32::MAX;

/// How many BFS distance maps a layout keeps, beyond each component's root map, for the
/// triangle bounds. At 30x30 about one BFS per layout is needed in all, so this cap is
/// rarely reached; it bounds the work on layouts where many pairs are close calls.
const MAX_LANDMARKS: usize = 6;

/// A uniform integer in `0..n` from 32-bit draws (Lemire's multiply-shift with rejection).
/// Written out here rather than taken from `rand` so the mapping from random words to
/// values can never change under us: same seed, same mazes, forever and on every target.
pub(crate) fn below(rng: &mut impl RngCore, n: u32) -> u32 {
    debug_assert!(n > 0);
    let mut m = u64::from(rng.next_u32()) * u64::from(n);
    if (m as u32) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u32) < threshold {
            m = u64::from(rng.next_u32()) * u64::from(n);
        }
    }
    (m >> 32) as u32
}

/// The resolved, validated parameters of the search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Params {
    pub rows: usize,
    pub cols: usize,
    pub min_walls: u32,
    pub max_walls: u32,
    pub min_moves: u32,
    pub pair_tries: u32,
}

/// A maze the search accepted, in unpadded row-major indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    /// Wall cells, ascending.
    pub walls: Vec<u32>,
    pub start: u32,
    pub goal: u32,
}

/// A BFS distance map of one component, from some cell of it.
struct Landmark {
    component: u32,
    dist: Vec<u32>,
}

/// Scratch buffers for searching layouts one after another (one per worker thread).
///
/// The grid is stored with a one-cell wall border (row stride `cols + 2`) so that BFS
/// can look at all four neighbours without bounds checks.
pub(crate) struct LayoutSearch {
    p: Params,
    stride: usize,
    /// Padded indices of the interior cells, in row-major order.
    template: Vec<u32>,
    /// Partial Fisher-Yates shuffle of `template`: walls first, then the open cells.
    perm: Vec<u32>,
    /// Component id per padded cell: `BLOCKED` on walls and the border, `UNSEEN` on open
    /// cells whose component nobody has needed yet, ids from 1.
    component: Vec<u32>,
    /// Cells per component, indexed by id (index 0 unused).
    component_size: Vec<u32>,
    /// Distance of each labelled cell from its component's root: the cell whose BFS
    /// labelled the component. Components are disjoint, so one map serves them all.
    root_dist: Vec<u32>,
    /// BFS queue, one slot per padded cell.
    queue: Vec<u32>,
    /// Further BFS maps, kept for the rest of the layout's pairs.
    landmarks: Vec<Landmark>,
    landmarks_used: usize,
    /// Distance map for BFS runs that do not become landmarks.
    scratch: Vec<u32>,
}

/// Component value of open cells not yet labelled.
const UNSEEN: u32 = 0;
/// Component value of walls and the border.
const BLOCKED: u32 = u32::MAX;

impl LayoutSearch {
    pub(crate) fn new(p: Params) -> LayoutSearch {
        let stride = p.cols + 2;
        let padded = (p.rows + 2) * stride;
        let template: Vec<u32> =
            (0..p.rows).flat_map(|r| (0..p.cols).map(move |c| ((r + 1) * stride + c + 1) as u32)).collect();
        LayoutSearch {
            p,
            stride,
            perm: template.clone(),
            template,
            component: vec![BLOCKED; padded],
            component_size: Vec::new(),
            root_dist: vec![INF; padded],
            // Each cell enters a BFS queue at most once.
            queue: vec![0; padded],
            landmarks: Vec::new(),
            landmarks_used: 0,
            scratch: vec![INF; padded],
        }
    }

    /// Unpadded row-major index of a padded index.
    fn unpad(&self, i: u32) -> u32 {
        let i = i as usize;
        ((i / self.stride - 1) * self.p.cols + (i % self.stride - 1)) as u32
    }

    /// Runs the recipe on one random stream: draw the wall count, the walls, then up to
    /// `pair_tries` uniform distinct (S, G) pairs on open cells; return the first pair
    /// whose shortest path has at least `min_moves` moves.
    pub(crate) fn search(&mut self, rng: &mut impl RngCore) -> Option<Found> {
        let p = self.p;
        let area = self.template.len() as u32;
        let walls = p.min_walls + below(rng, p.max_walls - p.min_walls + 1);
        self.perm.copy_from_slice(&self.template);
        for i in 0..walls {
            let j = i + below(rng, area - i);
            self.perm.swap(i as usize, j as usize);
        }
        self.component.fill(BLOCKED);
        for &cell in &self.perm[walls as usize..] {
            self.component[cell as usize] = UNSEEN;
        }
        self.component_size.clear();
        self.component_size.push(0);
        self.landmarks_used = 0;

        let open_count = area - walls;
        for attempt in 0..p.pair_tries {
            let si = below(rng, open_count);
            let mut gi = below(rng, open_count - 1);
            if gi >= si {
                gi += 1;
            }
            let s = self.perm[(walls + si) as usize] as usize;
            let g = self.perm[(walls + gi) as usize] as usize;
            let last = attempt + 1 == p.pair_tries;
            if self.far_enough(s, g, last) {
                let mut wall_cells: Vec<u32> = self.perm[..walls as usize].iter().map(|&c| self.unpad(c)).collect();
                wall_cells.sort_unstable();
                return Some(Found { walls: wall_cells, start: self.unpad(s as u32), goal: self.unpad(g as u32) });
            }
        }
        None
    }

    /// Labels the component of `root` by BFS from it, filling `root_dist` there.
    /// Components are labelled only when a start lands in them: most small ones never are.
    fn label_from(&mut self, root: usize) -> u32 {
        let id = self.component_size.len() as u32;
        let stride = self.stride;
        // Plain slices and a fixed-size queue keep the hot loop free of reloads and
        // capacity checks.
        let (component, dist, queue) = (&mut self.component[..], &mut self.root_dist[..], &mut self.queue[..]);
        component[root] = id;
        dist[root] = 0;
        queue[0] = root as u32;
        let (mut head, mut tail) = (0, 1);
        while head < tail {
            let i = queue[head] as usize;
            head += 1;
            let d = dist[i] + 1;
            for n in [i + stride, i - 1, i + 1, i - stride] {
                if component[n] == UNSEEN {
                    component[n] = id;
                    dist[n] = d;
                    queue[tail] = n as u32;
                    tail += 1;
                }
            }
        }
        self.component_size.push(tail as u32);
        id
    }

    /// Whether dist(s, g) >= min_moves. Exact: every shortcut below is a proof.
    fn far_enough(&mut self, s: usize, g: usize, last_attempt: bool) -> bool {
        let min = self.p.min_moves;
        let mut c = self.component[s];
        if c == UNSEEN {
            if self.component[g] != UNSEEN {
                // g's component is labelled in full and s is not in it.
                return false;
            }
            c = self.label_from(s);
        }
        // Different components (an unlabelled g is outside s's labelled component): no
        // path. A component of at most `min` cells cannot hold a shortest path of `min`
        // moves (it needs `min + 1` cells).
        if c != self.component[g] || self.component_size[c as usize] <= min {
            return false;
        }
        // Triangle inequality with each map of this component, from some cell L:
        // |d(L,s) - d(L,g)| <= d(s,g) <= d(L,s) + d(L,g).
        let decide = |a: u32, b: u32| {
            if a + b < min {
                Some(false)
            } else if a.abs_diff(b) >= min {
                Some(true)
            } else {
                None
            }
        };
        if let Some(answer) = decide(self.root_dist[s], self.root_dist[g]) {
            return answer;
        }
        for mark in &self.landmarks[..self.landmarks_used] {
            if mark.component == c
                && let Some(answer) = decide(mark.dist[s], mark.dist[g])
            {
                return answer;
            }
        }
        // Undecided: BFS from s. While there is room, keep the whole map as a new
        // landmark for later pairs; otherwise (or on the last try, when no later pair
        // can use it) stop as soon as g is reached.
        if self.landmarks_used < MAX_LANDMARKS && !last_attempt {
            if self.landmarks.len() == self.landmarks_used {
                self.landmarks.push(Landmark { component: 0, dist: vec![INF; self.component.len()] });
            }
            let mark = &mut self.landmarks[self.landmarks_used];
            mark.component = c;
            bfs(&self.component, c, self.stride, &mut mark.dist, &mut self.queue, s, None);
            self.landmarks_used += 1;
            // s and g share a component, so g is reached; the INF guard is belt and braces.
            mark.dist[g] != INF && mark.dist[g] >= min
        } else {
            let d = bfs(&self.component, c, self.stride, &mut self.scratch, &mut self.queue, s, Some(g));
            d != INF && d >= min
        }
    }
}

/// BFS from `s` over the cells of component `c`, writing distances into `dist`. With
/// `stop`, returns as soon as that cell is reached (its distance), leaving the map
/// partial; otherwise fills the whole component and returns `INF`.
fn bfs(component: &[u32], c: u32, stride: usize, dist: &mut [u32], queue: &mut [u32], s: usize, stop: Option<usize>) -> u32 {
    dist.fill(INF);
    dist[s] = 0;
    queue[0] = s as u32;
    let (mut head, mut tail) = (0, 1);
    while head < tail {
        let i = queue[head] as usize;
        head += 1;
        let d = dist[i] + 1;
        for n in [i + stride, i - 1, i + 1, i - stride] {
            if dist[n] == INF && component[n] == c {
                dist[n] = d;
                if stop == Some(n) {
                    return d;
                }
                queue[tail] = n as u32;
                tail += 1;
            }
        }
    }
    INF
}
