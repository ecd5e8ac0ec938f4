# syntax=docker/dockerfile:1.7
# AIASMSpotter detection service, CPU image. Build from the repository root (BuildKit reads the
# whitelist in cpu.Dockerfile.dockerignore beside this file):
#   docker build -f deploy/docker/cpu.Dockerfile -t asmspotter:0.1.0-cpu .
# Run:  docker run --rm -p 50051:50051 -p 9090:9090 asmspotter:0.1.0-cpu
# Pin the base by digest in production: docker buildx imagetools inspect python:3.11.14-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# CPU-only torch wheels (no CUDA libraries: an image ~2 GB smaller).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# `train` brings Detectron2's runtime needs (the service loads bundles of either engine);
# `label` the Label Studio SDK of the ML backend (`asmspotter label backend`).
ARG EXTRAS=server,train,label
ARG WITH_DETECTRON2=1
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends patch \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/venv
WORKDIR /src
# Dependencies in a layer of their own: editing code does not reinstall torch.
COPY pyproject.toml ./
COPY deploy/docker/requirements.py deploy/docker/requirements.py
RUN python deploy/docker/requirements.py pyproject.toml "$EXTRAS" > /tmp/requirements.txt \
 && pip install --extra-index-url "$TORCH_INDEX_URL" -r /tmp/requirements.txt
COPY . .
RUN pip install --no-deps . \
 && if [ "$WITH_DETECTRON2" = 1 ]; then bash third_party/detectron2/install.sh /opt/venv/bin/python; fi \
 && asmspotter --version

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 asmspotter \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/asmspotter \
      --shell /usr/sbin/nologin asmspotter
COPY --from=build /opt/venv /opt/venv
# The default model bundle, baked in; mount another over it or pass --bundle DIR.
COPY service/default_bundle /opt/asmspotter/bundle
COPY deploy/healthcheck.py deploy/shard.py /opt/asmspotter/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/asmspotter \
    XDG_CACHE_HOME=/tmp/cache \
    ASMSPOTTER_HEALTH_ADDRESS=127.0.0.1:50051
USER 10001:10001
WORKDIR /home/asmspotter
# 50051: gRPC (DetectionService, health, reflection); 9090: Prometheus /metrics.
EXPOSE 50051 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/opt/venv/bin/python", "/opt/asmspotter/healthcheck.py"]
ENTRYPOINT ["asmspotter"]
CMD ["serve", "--address", "0.0.0.0:50051", "--bundle", "/opt/asmspotter/bundle", \
     "--metrics-port", "9090", "--metrics-host", "0.0.0.0"]
