//! `GET /api/datasets` and `GET /api/datasets/{name}/{split}?offset&limit`: browse the
//! inputs and labels of the datasets under the data roots.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use trm_shared::wire::{DatasetInfo, DatasetItem, DatasetList, DatasetPage, PageQuery, SplitError, SplitInfo};
use trm_shared::dataset::SplitData;
use trm_shared::maze::square_side;

use super::catalog::Catalog;
use super::error::ApiError;
use super::maze_input::tokens_to_row_major;
use super::state::AppState;

/// Examples on a page when the query gives no limit.
const DEFAULT_PAGE: usize = 20;
/// The path token of the reference vocabulary.
const PATH_TOKEN: u8 = 5;

/// Every dataset and its splits with their sizes. Splits that cannot be read are listed
/// under `errors` (and logged), so that one bad file neither hides the rest nor stops the server.
#[utoipa::path(get, path = "/api/datasets", tag = "datasets", responses((status = 200, body = DatasetList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<DatasetList>, ApiError> {
    let catalog = state.catalog.clone();
    let datasets = blocking(move || Ok(list_blocking(&catalog))).await?;
    Ok(Json(DatasetList { datasets }))
}

fn list_blocking(catalog: &Catalog) -> Vec<DatasetInfo> {
    catalog
        .discover()
        .into_iter()
        .map(|d| {
            let (mut splits, mut errors) = (Vec::new(), Vec::new());
            for (name, dir) in &d.splits {
                match catalog.load(dir).and_then(|s| shape(&s)) {
                    Ok((examples, rows, cols)) => splits.push(SplitInfo { name: name.clone(), examples, rows, cols }),
                    Err(e) => {
                        tracing::warn!("dataset {} split {name}: {}", d.name, e.message);
                        errors.push(SplitError { name: name.clone(), error: e.message });
                    }
                }
            }
            DatasetInfo { name: d.name, splits, errors }
        })
        .collect()
}

/// A page of examples of one split.
#[utoipa::path(get, path = "/api/datasets/{name}/{split}", tag = "datasets",
    params(("name" = String, Path, description = "dataset"), ("split" = String, Path, description = "split"),
        ("offset" = Option<usize>, Query, description = "first example (default 0)"),
        ("limit" = Option<usize>, Query, description = "examples (default 20, at most 100)")),
    responses((status = 200, body = DatasetPage), (status = 400, body = trm_shared::wire::ErrorBody), (status = 404, body = trm_shared::wire::ErrorBody), (status = 422, body = trm_shared::wire::ErrorBody)))]
pub async fn page(
    State(state): State<Arc<AppState>>,
    Path((name, split)): Path<(String, String)>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<DatasetPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(format!("{}; expected ?offset=N&limit=M", e.body_text())))?;
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).min(state.limits.max_page);
    let catalog = state.catalog.clone();
    let page = blocking(move || {
        let dir = catalog.split_dir(&name, &split)?;
        let data = catalog.load(&dir)?;
        let (total, rows, cols) = shape(&data)?;
        if offset > total {
            return Err(ApiError::unprocessable(format!("offset {offset} is past the end: {name}/{split} has {total} examples")));
        }
        let seq = data.seq_len;
        let items = (offset..(offset + limit).min(total))
            .map(|index| {
                let label = &data.labels[index * seq..(index + 1) * seq];
                DatasetItem {
                    index,
                    input: tokens_to_row_major(&data.inputs[index * seq..(index + 1) * seq]),
                    label: tokens_to_row_major(label),
                    moves: label.iter().filter(|&&t| t == PATH_TOKEN).count() + 1,
                }
            })
            .collect();
        Ok(DatasetPage { dataset: name, split, total, offset, limit, rows, cols, items })
    })
    .await?;
    Ok(Json(page))
}

/// `(examples, rows, cols)` of a split of square mazes.
fn shape(data: &SplitData) -> Result<(usize, usize, usize), ApiError> {
    let side = square_side(data.seq_len)
        .map_err(|_| ApiError::unprocessable(format!("rows of {} cells are not square mazes", data.seq_len)))?;
    Ok((data.inputs.len() / data.seq_len.max(1), side, side))
}

/// Runs file work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(format!("dataset reader stopped: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use trm_shared::dataset::write_dataset;
    use trm_shared::maze::{Grid, label};

    #[test]
    fn a_bad_split_is_listed_with_its_error_and_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let g = Grid::parse_lines("S \n G\n").unwrap();
        let split = SplitData::from_examples(4, vec![(g.tokens(), label(&g).unwrap().tokens())]);
        write_dataset(&tmp.path().join("mazes"), &[("train", &split), ("test", &split)]).unwrap();
        // A 100-byte npy that declares 2^62 mazes.
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (4611686018427387904, 1), }\n";
        let npy = [&b"\x93NUMPY\x01\x00"[..], &(dict.len() as u16).to_le_bytes(), dict.as_bytes()].concat();
        std::fs::write(tmp.path().join("mazes/test/all__inputs.npy"), npy).unwrap();
        let list = list_blocking(&Catalog::new(vec![tmp.path().to_path_buf()]));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].splits.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["train"]);
        assert_eq!(list[0].errors.len(), 1);
        let e = &list[0].errors[0];
        assert!(e.name == "test" && e.error.contains("the file holds 0"), "{e:?}");
    }
}
