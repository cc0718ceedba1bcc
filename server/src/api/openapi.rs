//! The OpenAPI document of the API, generated from the handlers' annotations and the wire
//! types, served at `/api/openapi.json` and browsed with Swagger UI at `/docs`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{datasets, generate, health, jobs, models, predict};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "trm serve",
        description = "The Tiny Recursive Model on mazes: predictions, maze generation, datasets, evaluation and training jobs. \
            Endpoints that start work need `Authorization: Bearer <token>` (printed by `trm serve` at start, or its --token / TRM_TOKEN). \
            Errors are `{\"error\": \"...\"}` naming the problem."
    ),
    paths(
        health::health,
        models::list,
        models::register,
        predict::predict,
        generate::generate,
        datasets::list,
        datasets::page,
        jobs::submit_eval,
        jobs::submit_train,
        jobs::list,
        jobs::get,
        jobs::cancel,
        jobs::resume,
        jobs::events,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "server", description = "health"),
        (name = "models", description = "the served models"),
        (name = "mazes", description = "predictions and new mazes"),
        (name = "datasets", description = "browsing datasets"),
        (name = "jobs", description = "evaluation and training in the background"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the protected endpoints name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
    }
}

/// `GET /api/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
