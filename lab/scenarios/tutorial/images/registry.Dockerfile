# The CNCF Distribution registry from Debian's `docker-registry` package:
# the same program `registry:2` ships, built here without Docker Hub.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-registry \
 && dpkg-query -W -f '${Version}' docker-registry > /etc/reglab-package-version \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# Debian's packaged config turns htpasswd auth on; this one matches registry:2's.
COPY registry-config.yml /etc/docker/registry/config.yml
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/usr/bin/docker-registry"]
CMD ["serve", "/etc/docker/registry/config.yml"]
