#!/bin/sh
# The seeds' kubia app: answers every request with the name of the host (the pod) it runs on,
# and logs who asked, like its app.js.
echo "Received request from ${REMOTE_ADDR:-unknown}" >&2
printf 'Content-Type: text/plain\r\n\r\n'
printf "You've hit %s\n" "$(hostname)"
