# The debian-systemd scenario's job, run by e2e-report.service once the
# system is up: what volctl and systemd say of the boot.
echo 'BEGIN status'; volctl status -o json; echo 'END status'
for u in volctl-boot.service volctl-volume@persistence.service webui.service persistence.mount systemd-ask-password-console.service; do
	echo "BEGIN unit $u"
	systemctl show -p ActiveState -p Result -p ActiveEnterTimestampMonotonic -p ExecMainStartTimestampMonotonic "$u"
	echo "END unit $u"
done
echo 'BEGIN journal'
journalctl -b --no-pager -o short-monotonic -u volctl-boot.service -u 'volctl-volume@persistence.service' -u webui.service
echo 'END journal'
echo 'BEGIN recovery'; volctl recovery-key fetch --volume persistence 2>/dev/null; echo 'END recovery'
echo 'BEGIN files'; cat /persistence/kept 2>&1; echo 'END files'
[ -d /persistence ] && mountpoint -q /persistence && echo kept-across-boots > /persistence/kept
# A job may add a step of its own (the package upgraded while volctl serve runs).
[ -f /run/job/extra.sh ] && sh /run/job/extra.sh
exit 0
