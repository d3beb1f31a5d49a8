# The image the client commits `initcron` in (the tutorial's `ubuntu`): Debian's
# static BusyBox on an empty file system. 2 MB instead of 120 MB, so pushes,
# pulls and loads take a second, and `touch`, `ls` and `sh` are all a step needs.
ARG BASE
FROM ${BASE} AS package
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends busybox-static \
 && mkdir -p /out/bin /out/etc /out/tmp /out/root \
 && cp /bin/busybox /out/bin/busybox \
 && for applet in $(/out/bin/busybox --list); do \
      [ "$applet" = busybox ] || ln -s busybox "/out/bin/$applet"; done \
 && dpkg-query -W -f '${Version}' busybox-static > /out/etc/reglab-package-version \
 && chmod 1777 /out/tmp

FROM scratch
COPY --from=package /out/ /
CMD ["/bin/sh"]
