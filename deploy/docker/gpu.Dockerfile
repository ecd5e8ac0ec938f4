# syntax=docker/dockerfile:1.7
# AIASMSpotter detection service, GPU image (CUDA 12.8 runtime; needs an NVIDIA driver >= 570 and
# the NVIDIA Container Toolkit on the host). Build from the repository root (BuildKit reads the
# whitelist in gpu.Dockerfile.dockerignore beside this file):
#   docker build -f deploy/docker/gpu.Dockerfile -t asmspotter:0.1.0-gpu .
# Run:  docker run --rm --gpus all -p 50051:50051 -p 9090:9090 asmspotter:0.1.0-gpu
# Pin the base by digest in production: docker buildx imagetools inspect nvidia/cuda:12.8.1-runtime-ubuntu22.04
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04

# Python 3.11 (the project's version) from the deadsnakes archive, shared by both stages so the
# virtual environment built in one runs unchanged in the other.
FROM ${CUDA_IMAGE} AS python
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
 && apt-get purge -y --auto-remove software-properties-common gpg-agent \
 && rm -rf /var/lib/apt/lists/*

FROM python AS build
# Empty: torch from the package registry, whose Linux wheels carry their own CUDA 12 libraries.
# Or name a CUDA-specific index of the PyTorch project.
ARG TORCH_INDEX_URL=
ARG EXTRAS=server,train,label
ARG WITH_DETECTRON2=1
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN apt-get update \
 && apt-get install -y --no-install-recommends patch \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
COPY deploy/docker/requirements.py deploy/docker/requirements.py
RUN python deploy/docker/requirements.py pyproject.toml "$EXTRAS" > /tmp/requirements.txt \
 && pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r /tmp/requirements.txt
COPY . .
RUN pip install --no-deps . \
 && if [ "$WITH_DETECTRON2" = 1 ]; then bash third_party/detectron2/install.sh /opt/venv/bin/python; fi \
 && asmspotter --version

FROM python AS runtime
RUN groupadd --system --gid 10001 asmspotter \
 && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/asmspotter \
      --shell /usr/sbin/nologin asmspotter
COPY --from=build /opt/venv /opt/venv
COPY service/default_bundle /opt/asmspotter/bundle
COPY deploy/healthcheck.py deploy/shard.py /opt/asmspotter/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/asmspotter \
    XDG_CACHE_HOME=/tmp/cache \
    ASMSPOTTER_HEALTH_ADDRESS=127.0.0.1:50051 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /home/asmspotter
EXPOSE 50051 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
  CMD ["/opt/venv/bin/python", "/opt/asmspotter/healthcheck.py"]
ENTRYPOINT ["asmspotter"]
# --device cuda: fail loudly on a node without a usable GPU rather than fall back to the CPU.
CMD ["serve", "--address", "0.0.0.0:50051", "--bundle", "/opt/asmspotter/bundle", \
     "--device", "cuda", "--metrics-port", "9090", "--metrics-host", "0.0.0.0"]
