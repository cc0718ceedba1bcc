# trm with CUDA and MPI, and the web app: `docker build -t trm .` (README, "Training across
# machines"). A CUDA *devel* image at run time too: burn 0.21's CUDA backend compiles its
# kernels with NVRTC and includes the CUDA headers from CUDA_PATH; libcuda itself comes from
# the host's driver (docker run --gpus all, or the cloud's runtime).
ARG CUDA_IMAGE=nvidia/cuda:12.4.1-devel-ubuntu22.04

FROM ${CUDA_IMAGE} AS build
ARG RUST_VERSION=1.95.0
ENV DEBIAN_FRONTEND=noninteractive \
    RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    CARGO_TARGET_DIR=/build/target \
    PATH=/usr/local/cargo/bin:$PATH
# Open MPI and libclang: the `mpi` feature (mpi-sys runs bindgen against mpi.h).
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates curl build-essential pkg-config libopenmpi-dev openmpi-bin libclang-dev \
    && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain "$RUST_VERSION"
WORKDIR /src
COPY . .
# The web app's tools, as on a developer machine: the wasm target, Trunk, wasm-bindgen-cli of
# Cargo.lock's version, wasm-opt (binaryen 116). TRM_SETUP_TESTS=0: no browsers, no test tools.
RUN TRM_SETUP_TESTS=0 bash scripts/setup.sh
RUN cargo fetch --locked \
    && cargo build --release --locked -p trm-server --features cuda,mpi --bin trm \
    && trunk build --release

FROM ${CUDA_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive \
    CUDA_PATH=/usr/local/cuda \
    RUST_LOG=info \
    # Clouds run containers as root; Open MPI refuses that without these.
    OMPI_ALLOW_RUN_AS_ROOT=1 \
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's runtime (mpirun, libmpi) for multi-node training; ssh for mpirun to start ranks
# on the other machines of a cluster that has no other launcher (deploy/modal_app.py).
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates openmpi-bin libopenmpi3 openssh-client openssh-server \
    && rm -rf /var/lib/apt/lists/*
# `trm serve` looks for dist/ and public/models/ in its working directory; configs name
# data/... relative to it (mount datasets and runs at /opt/trm/data and /opt/trm/runs).
WORKDIR /opt/trm
COPY --from=build /build/target/release/trm /usr/local/bin/trm
COPY --from=build /src/dist ./dist
COPY public ./public
COPY configs ./configs
EXPOSE 8080
CMD ["trm", "serve", "--addr", "0.0.0.0:8080"]
