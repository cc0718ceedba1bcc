//! Tests of the generator. The exactness of the search is checked against a plain
//! re-implementation of the recipe that uses `maze::distances_from` for every pair.

use super::*;

fn config(rows: usize, cols: usize, min_moves: u32, seed: u64) -> GenerateConfig {
    GenerateConfig { rows, cols, min_moves: Some(min_moves), seed, ..GenerateConfig::default() }
}

fn params(r: &Resolved) -> Params {
    Params {
        rows: r.rows,
        cols: r.cols,
        min_walls: r.min_walls,
        max_walls: r.max_walls,
        min_moves: r.min_moves,
        pair_tries: r.pair_tries,
    }
}

/// The recipe with no shortcuts, drawing the same numbers from the same stream.
fn naive_layout(r: &Resolved, seed: u64, split: usize, index: u64) -> Option<Found> {
    let mut rng = layout_rng(seed, split, index);
    let area = (r.rows * r.cols) as u32;
    let walls = r.min_walls + search::below(&mut rng, r.max_walls - r.min_walls + 1);
    let mut perm: Vec<u32> = (0..area).collect();
    for i in 0..walls {
        let j = i + search::below(&mut rng, area - i);
        perm.swap(i as usize, j as usize);
    }
    let mut grid = Grid::open(r.rows, r.cols);
    for &w in &perm[..walls as usize] {
        grid.set(w as usize, Cell::Wall);
    }
    let open = area - walls;
    for _ in 0..r.pair_tries {
        let si = search::below(&mut rng, open);
        let mut gi = search::below(&mut rng, open - 1);
        if gi >= si {
            gi += 1;
        }
        let (s, g) = (perm[(walls + si) as usize], perm[(walls + gi) as usize]);
        let d = maze::distances_from(&grid, s as usize)[g as usize];
        if d != u32::MAX && d >= r.min_moves {
            let mut wall_cells = perm[..walls as usize].to_vec();
            wall_cells.sort_unstable();
            return Some(Found { walls: wall_cells, start: s, goal: g });
        }
    }
    None
}

#[test]
fn search_matches_the_plain_recipe() {
    // Small minimum (many landmark accepts and rejects), tight minimum, one try per layout
    // (the early-exit BFS), a rectangle, and the real size with a lower minimum.
    let cases = [
        (config(7, 7, 6, 1), 3000),
        (config(8, 8, 18, 2), 3000),
        (GenerateConfig { pair_tries: 1, ..config(8, 8, 12, 3) }, 3000),
        (config(6, 11, 16, 4), 3000),
        (config(30, 30, 70, 5), 300),
    ];
    for (cfg, layouts) in cases {
        let r = cfg.resolve().unwrap();
        let mut search = LayoutSearch::new(params(&r));
        let mut accepted = 0;
        for k in 0..layouts {
            let fast = search_layout(&mut search, cfg.seed, 1, k);
            assert_eq!(fast, naive_layout(&r, cfg.seed, 1, k), "{cfg:?} layout {k}");
            accepted += usize::from(fast.is_some());
        }
        // Both outcomes must occur, or the comparison proves little.
        assert!(accepted > 0 && accepted < layouts as usize, "{cfg:?}: {accepted} of {layouts} accepted");
    }
}

#[test]
fn output_is_the_first_new_layouts_in_index_order() {
    let cfg = config(6, 6, 9, 11);
    let r = cfg.resolve().unwrap();
    let got = generate_splits(&cfg, &[40, 30], &mut |_| {}).unwrap();
    let mut seen = HashSet::new();
    let mut search = LayoutSearch::new(params(&r));
    for (split, mazes) in got.iter().enumerate() {
        let mut expected = Vec::new();
        let mut k = 0;
        while expected.len() < mazes.len() {
            if let Some(found) = search_layout(&mut search, cfg.seed, split, k)
                && seen.insert(wall_key(&found.walls, 36))
            {
                expected.push(build_maze(&r, &found).unwrap());
            }
            k += 1;
        }
        assert_eq!(mazes, &expected, "split {split}");
    }
}

fn generate_in_pool(threads: usize, cfg: &GenerateConfig, counts: &[usize]) -> Vec<Vec<GeneratedMaze>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| generate_splits(cfg, counts, &mut |_| {}).unwrap())
}

#[test]
fn same_seed_same_mazes_on_any_thread_count() {
    let cfg = config(9, 9, 20, 42);
    let one = generate_in_pool(1, &cfg, &[60, 20]);
    let two = generate_in_pool(2, &cfg, &[60, 20]);
    assert_eq!(one, two);
    assert_eq!(one[0].len(), 60);
    assert_eq!(one[1].len(), 20);
    let other = generate_in_pool(2, &GenerateConfig { seed: 43, ..cfg.clone() }, &[60, 20]);
    assert_ne!(one[0], other[0]);
    assert_ne!(one[1], other[1]);
    // A split does not depend on the size of the next one.
    let train_only = generate_in_pool(2, &cfg, &[60, 0]);
    assert_eq!(train_only[0], one[0]);
}

#[test]
fn every_maze_follows_the_recipe() {
    for cfg in [config(10, 10, 25, 7), config(5, 5, 6, 8), config(7, 13, 22, 9)] {
        let r = cfg.resolve().unwrap();
        let splits = generate_splits(&cfg, &[150, 50], &mut |_| {}).unwrap();
        let mut layouts = HashSet::new();
        for maze in splits.iter().flatten() {
            let p = &maze.puzzle;
            assert_eq!((p.rows(), p.cols()), (r.rows, r.cols));
            let walls = p.wall_count() as u32;
            assert!((r.min_walls..=r.max_walls).contains(&walls), "{walls} walls");
            assert_eq!(maze.label, maze::label(p).unwrap());
            let path = maze::shortest_path(p).unwrap().unwrap();
            assert_eq!(path.moves() as u32, maze.moves);
            assert!(maze.moves >= r.min_moves, "{} moves", maze.moves);
            let (s, g) = p.validate_puzzle().unwrap();
            let layout: Vec<bool> = p.cells().iter().map(|&c| c == Cell::Wall).collect();
            assert!(layouts.insert(layout), "duplicate wall layout (S {s}, G {g})");
        }
    }
}

#[test]
fn statistics_of_a_moderate_sample() {
    // 14x14: 59..=98 walls, default minimum 43 moves. The sample is checked against
    // properties of the recipe that a broken generator would miss.
    let cfg = GenerateConfig { rows: 14, cols: 14, seed: 3, ..GenerateConfig::default() };
    let r = cfg.resolve().unwrap();
    let splits = generate_splits(&cfg, &[300, 100], &mut |_| {}).unwrap();
    let all: Vec<&GeneratedMaze> = splits.iter().flatten().collect();
    let stats = MazeStats::from_pairs(all.iter().map(|m| (&m.puzzle, &m.label)));
    assert_eq!(stats.count, 400);
    assert_eq!(stats.invalid, 0);
    assert_eq!(stats.share_label_rule, 1.0);
    let moves = stats.moves.unwrap();
    // The filter is sharp: the minimum is hit often, and the tail is short.
    assert_eq!(moves.min, r.min_moves);
    assert!((0.08..0.40).contains(&stats.share_at_min_moves), "{stats}");
    assert!(moves.mean < f64::from(r.min_moves) + 8.0, "{stats}");
    // Walls stay spread over the whole range (uniform count, then a mild filter bias).
    let walls = stats.walls.unwrap();
    let (lo, hi) = (f64::from(r.min_walls), f64::from(r.max_walls));
    assert!(walls.mean > lo + 0.25 * (hi - lo) && walls.mean < hi - 0.1 * (hi - lo), "{stats}");
    assert!(walls.sd > 0.12 * (hi - lo), "{stats}");
    // S and G are not pinned to any cell.
    let starts: HashSet<usize> = all.iter().map(|m| m.puzzle.endpoints().unwrap().0).collect();
    assert!(starts.len() > 60, "{} distinct starts", starts.len());
}

#[test]
fn defaults_and_config_file() {
    assert_eq!(default_min_moves(30, 30), BENCHMARK_MIN_MOVES);
    let defaults: Vec<u32> = [2, 3, 5, 10, 14, 20, 40, 60].iter().map(|&n| default_min_moves(n, n)).collect();
    assert_eq!(defaults, [1, 1, 5, 23, 43, 68, 150, 232]);
    assert_eq!(default_min_moves(20, 40), 109);
    let r = GenerateConfig::default().resolve().unwrap();
    assert_eq!((r.rows, r.cols, r.min_walls, r.max_walls, r.min_moves, r.pair_tries), (30, 30, 270, 450, 109, 10));
    let parsed: GenerateConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(parsed, GenerateConfig::default());
    let parsed: GenerateConfig = serde_json::from_str(r#"{"rows": 5, "cols": 7, "min_moves": 9}"#).unwrap();
    assert_eq!((parsed.rows, parsed.cols, parsed.min_moves, parsed.seed), (5, 7, Some(9), 0));
    assert!(serde_json::from_str::<GenerateConfig>(r#"{"size": 5}"#).is_err());
    // The default minimum is reachable at every small size.
    for side in 2..=40 {
        for other in [side, side + 3] {
            let r = GenerateConfig { rows: side, cols: other, ..GenerateConfig::default() }.resolve();
            assert!(r.is_ok(), "{side}x{other}: {r:?}");
        }
    }
}

#[test]
fn bad_configs_are_refused() {
    let bad = |cfg: GenerateConfig, counts: &[usize]| generate_splits(&cfg, counts, &mut |_| {}).unwrap_err();
    assert!(matches!(bad(config(0, 30, 5, 0), &[1]), GenerateError::TooSmall { .. }));
    assert!(matches!(bad(config(1, 1, 5, 0), &[1]), GenerateError::TooSmall { .. }));
    assert!(matches!(bad(config(5000, 5000, 5, 0), &[1]), GenerateError::TooLarge { .. }));
    assert!(matches!(bad(config(30, 30, 0, 0), &[1]), GenerateError::ZeroMinMoves));
    assert!(matches!(bad(config(30, 30, 630, 0), &[1]), GenerateError::ImpossibleMinMoves { .. }));
    assert!(matches!(bad(config(30, 30, 109, 0), &[0, 0]), GenerateError::NothingRequested));
    assert!(matches!(
        bad(GenerateConfig { min_walls: Some(10), max_walls: Some(9), ..config(5, 5, 3, 0) }, &[1]),
        GenerateError::EmptyWallRange { .. }
    ));
    assert!(matches!(
        bad(GenerateConfig { max_walls: Some(24), ..config(5, 5, 3, 0) }, &[1]),
        GenerateError::TooManyWalls { .. }
    ));
    assert!(matches!(bad(GenerateConfig { pair_tries: 0, ..config(5, 5, 3, 0) }, &[1]), GenerateError::ZeroPairTries));
    assert!(matches!(bad(config(3, 3, 1, 0), &[500, 500]), GenerateError::TooManyMazes { .. }));
    // Possible by counting cells, hopeless in practice: gives up after the stall limit.
    let err = bad(GenerateConfig { max_layouts_without_maze: 20_000, ..config(5, 5, 16, 0) }, &[1]);
    assert!(matches!(err, GenerateError::Stalled { layouts: 20_000, found: 0, .. }), "{err}");
    // Layouts used up: of the 10 2x2 layouts with 1 or 2 walls only the 4 with one wall
    // have a 2-move path, so the second split finds one and then stalls.
    let cfg = GenerateConfig { min_walls: Some(1), max_walls: Some(2), max_layouts_without_maze: 5_000, ..config(2, 2, 2, 0) };
    let err = bad(cfg, &[3, 2]);
    assert!(matches!(err, GenerateError::Stalled { split: 1, found: 1, .. }), "{err}");
}

#[test]
fn progress_reaches_the_count() {
    let mut reports = Vec::new();
    generate_splits(&config(6, 6, 8, 1), &[5, 3], &mut |p| reports.push(p)).unwrap();
    let last_train = reports.iter().rfind(|p| p.split == 0).unwrap();
    let last_test = reports.last().unwrap();
    assert_eq!((last_train.found, last_train.requested), (5, 5));
    assert_eq!((last_test.split, last_test.found, last_test.requested), (1, 3, 3));
}
