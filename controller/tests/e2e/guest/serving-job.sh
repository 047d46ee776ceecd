volctl boot --disk /dev/vda > /tmp/boot.out 2>&1
rc=$?
cat /tmp/boot.out
echo "BOOT-RC $rc"
echo 'BEGIN status'; volctl status -o json 2>/dev/null; echo 'END status'
api=/var/lib/volctl/state/api
if [ -d /var/lib/volctl/state ]; then
  mkdir -p $api
  for f in ca.crt server.crt server.key; do [ -e $api/$f ] || cp /job/api/$f $api/$f; done
  chmod 600 $api/server.key
fi
volctl serve --disk /dev/vda --reboot-command 'touch /tmp/reboot' > /tmp/serve.out 2>&1 &
while [ ! -e /tmp/reboot ]; do sleep 0.1; done
sleep 0.3
kill %1
echo 'BEGIN serve'; cat /tmp/serve.out; echo 'END serve'
volctl close >/dev/null 2>&1
exit 0
