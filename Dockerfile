# modelwatch: a multi-stage build. The runtime image holds the binary, ONNX
# Runtime's shared library from its official release archive, and nothing
# else of note; it runs as a non-root user.
ARG GO_VERSION=1.26
ARG ONNXRUNTIME_VERSION=1.24.1

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=1 CGO_CFLAGS=-Wno-deprecated-declarations go build -trimpath \
      -ldflags "-s -w -X github.com/modelwatch/modelwatch/internal/version.Version=${VERSION} -X github.com/modelwatch/modelwatch/internal/version.Revision=${REVISION}" \
      -o /out/modelwatch ./cmd/modelwatch

FROM debian:bookworm-slim AS onnxruntime
ARG ONNXRUNTIME_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
RUN curl -fsSL -o /tmp/ort.tgz \
      "https://github.com/microsoft/onnxruntime/releases/download/v${ONNXRUNTIME_VERSION}/onnxruntime-linux-x64-${ONNXRUNTIME_VERSION}.tgz" \
 && mkdir -p /opt/onnxruntime \
 && tar -xzf /tmp/ort.tgz -C /opt/onnxruntime --strip-components=1 \
 && rm /tmp/ort.tgz

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin modelwatch \
 && mkdir -p /models /var/lib/modelwatch && chown modelwatch /models /var/lib/modelwatch
COPY --from=onnxruntime /opt/onnxruntime/lib /opt/onnxruntime/lib
COPY --from=build /out/modelwatch /usr/local/bin/modelwatch
ENV MODELWATCH_ONNXRUNTIME_LIBRARY=/opt/onnxruntime/lib/libonnxruntime.so \
    MODELWATCH_LISTEN_ADDRESS=:8000 \
    MODELWATCH_DATA_DIR=/var/lib/modelwatch \
    MODELWATCH_LOG_FORMAT=json
# The prediction log, its journal and spool: mount a volume here to keep
# them across containers.
VOLUME /var/lib/modelwatch
USER 10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["curl", "-fsS", "http://127.0.0.1:8000/health"]
ENTRYPOINT ["/usr/local/bin/modelwatch"]
CMD ["serve"]
