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

/// How many full BFS distance maps a layout keeps as landmarks for the triangle bounds.
/// Measured at 30x30: the bounds settle most pairs after two or three maps; more maps
/// cost more BFS than they save.
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

/// A BFS distance map over the padded grid, valid for one component.
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
    open: Vec<bool>,
    /// Component id per padded cell (0 for walls and the border).
    component: Vec<u32>,
    /// Cells per component, indexed by id.
    component_size: Vec<u32>,
    stack: Vec<u32>,
    queue: Vec<u32>,
    landmarks: Vec<Landmark>,
    landmarks_used: usize,
    /// Distance map for BFS runs that do not become landmarks.
    scratch: Vec<u32>,
}

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
            open: vec![false; padded],
            component: vec![0; padded],
            component_size: Vec::new(),
            stack: Vec::new(),
            queue: Vec::with_capacity(padded),
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
        self.open.fill(false);
        for &cell in &self.perm[walls as usize..] {
            self.open[cell as usize] = true;
        }
        self.label_components(walls as usize);
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

    /// Flood-fills the open cells into components (ids from 1).
    fn label_components(&mut self, walls: usize) {
        self.component.fill(0);
        self.component_size.clear();
        self.component_size.push(0);
        let stride = self.stride;
        for k in walls..self.perm.len() {
            let seed = self.perm[k] as usize;
            if self.component[seed] != 0 {
                continue;
            }
            let id = self.component_size.len() as u32;
            let mut size = 1;
            self.component[seed] = id;
            self.stack.clear();
            self.stack.push(seed as u32);
            while let Some(i) = self.stack.pop() {
                let i = i as usize;
                for n in [i + stride, i - 1, i + 1, i - stride] {
                    if self.open[n] && self.component[n] == 0 {
                        self.component[n] = id;
                        size += 1;
                        self.stack.push(n as u32);
                    }
                }
            }
            self.component_size.push(size);
        }
    }

    /// Whether dist(s, g) >= min_moves. Exact: every shortcut below is a proof.
    fn far_enough(&mut self, s: usize, g: usize, last_attempt: bool) -> bool {
        let min = self.p.min_moves;
        let c = self.component[s];
        // Different components: no path at all. A component of at most `min` cells
        // cannot hold a shortest path of `min` moves (it needs `min + 1` cells).
        if c != self.component[g] || self.component_size[c as usize] <= min {
            return false;
        }
        // Triangle inequality with each landmark L of this component:
        // |d(L,s) - d(L,g)| <= d(s,g) <= d(L,s) + d(L,g).
        for mark in &self.landmarks[..self.landmarks_used] {
            if mark.component != c {
                continue;
            }
            let (a, b) = (mark.dist[s], mark.dist[g]);
            if a + b < min {
                return false;
            }
            if a.abs_diff(b) >= min {
                return true;
            }
        }
        // Undecided: BFS from s. While there is room, keep the whole map as a new
        // landmark for later pairs; otherwise (or on the last try, when no later pair
        // can use it) stop as soon as g is reached.
        if self.landmarks_used < MAX_LANDMARKS && !last_attempt {
            if self.landmarks.len() == self.landmarks_used {
                self.landmarks.push(Landmark { component: 0, dist: vec![INF; self.open.len()] });
            }
            let mark = &mut self.landmarks[self.landmarks_used];
            mark.component = c;
            bfs(&self.open, self.stride, &mut mark.dist, &mut self.queue, s, None);
            self.landmarks_used += 1;
            // s and g share a component, so g is reached; the INF guard is belt and braces.
            mark.dist[g] != INF && mark.dist[g] >= min
        } else {
            let d = bfs(&self.open, self.stride, &mut self.scratch, &mut self.queue, s, Some(g));
            d != INF && d >= min
        }
    }
}

/// BFS over the padded grid from `s`, writing distances into `dist`. With `stop`, returns
/// as soon as that cell is reached (its distance), leaving the map partial; otherwise
/// fills the whole component and returns `INF`.
fn bfs(open: &[bool], stride: usize, dist: &mut [u32], queue: &mut Vec<u32>, s: usize, stop: Option<usize>) -> u32 {
    dist.fill(INF);
    dist[s] = 0;
    queue.clear();
    queue.push(s as u32);
    let mut head = 0;
    while head < queue.len() {
        let i = queue[head] as usize;
        head += 1;
        let d = dist[i] + 1;
        for n in [i + stride, i - 1, i + 1, i - stride] {
            if open[n] && dist[n] == INF {
                dist[n] = d;
                if stop == Some(n) {
                    return d;
                }
                queue.push(n as u32);
            }
        }
    }
    INF
}
