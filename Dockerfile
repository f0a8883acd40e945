# RFLocal workbench: docker build -t rflocal . && docker run -p 8501:8501 -v $PWD/workspace:/app/workspace \
#   -e RFLOCAL_PASSWORD=... rflocal
# The container binds 0.0.0.0 (to be reachable through -p), so it starts only with sign-in configured
# (RFLOCAL_PASSWORD / RFLOCAL_PASSWORD_HASH, or a secrets file mounted at /app/.streamlit/secrets.toml)
# or RFLOCAL_AUTH=none; otherwise it exits 2 saying so (README: "Serving other machines").
# Leaflet for the Scene Builder's box map, from the committed lock file (served by the app: works offline).
FROM node:20-bookworm-slim AS boxmap
WORKDIR /boxmap
COPY pages/components/boxmap/package.json pages/components/boxmap/package-lock.json pages/components/boxmap/.npmrc ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim-bookworm

# libllvm19: Sionna RT's CPU backend (Dr.Jit) needs LLVM >= 16; bookworm's default 15 aborts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libllvm19 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt pyproject.toml README.md ./
# The CPU build of PyTorch (the default index would bring several GB of CUDA libraries).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" torch==2.13.0 \
    && pip install --no-cache-dir -r requirements.txt
COPY . .
COPY --from=boxmap /boxmap/node_modules pages/components/boxmap/node_modules
RUN pip install --no-cache-dir --no-deps -e .

ENV RFLOCAL_WORKSPACE=/app/workspace
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status == 200 else 1)"
CMD ["python", "-m", "rflocal_core", "serve", "--address", "0.0.0.0", "--port", "8501"]
