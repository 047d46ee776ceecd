# The debian-systemd scenario: volctl-kms.service as the package ships it
# (a dynamic user, its two secrets handed over as credentials), started by
# systemd; a volume on an image file converged with a kms key against it.
echo 'BEGIN kms'
mkdir -p /etc/volctl-kms
volctl kms-server genkey > /etc/volctl-kms/keys && chmod 600 /etc/volctl-kms/keys
volctl gen --out /run/kmspki --san 127.0.0.1 >/dev/null
cp /run/kmspki/server.crt /etc/volctl-kms/tls.crt
install -m 0600 /run/kmspki/server.key /etc/volctl-kms/tls.key
systemctl start volctl-kms.service
i=0; until [ $i -ge 50 ] || journalctl -u volctl-kms.service -o cat | grep -q 'listening on'; do sleep 0.2; i=$((i+1)); done
cat > /run/kms.yaml <<'YAML'
apiVersion: v1alpha1
kind: UserVolumeConfig
name: data
provisioning: {diskSelector: {match: '!system_disk'}, maxSize: 1GiB}
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      kms: {endpoint: 'https://127.0.0.1:4050'}
YAML
truncate -s 40M /run/kms.img
volctl converge --volume data --device /run/kms.img -f /run/kms.yaml --kms-ca-file /run/kmspki/ca.crt >/dev/null 2>&1
echo "converge $?"
volctl converge --volume data --device /run/kms.img -f /run/kms.yaml --kms-ca-file /run/kmspki/ca.crt -o json 2>/dev/null | tr -d ' \n' | grep -o '"unlocked_by":\[[^]]*\]'; echo
systemctl show -p ActiveState -p User volctl-kms.service
journalctl -u volctl-kms.service -o cat --no-pager
echo 'END kms'
