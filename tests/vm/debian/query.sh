# The debian-systemd scenario: a question volctl posts for the ask-password
# agents (a command run without a terminal) answered by systemd's own
# `systemd-tty-ask-password-agent --query`, as an admin in an SSH session
# would (`script` gives it the terminal it wants).
echo 'BEGIN query'
cat > /run/q.yaml <<'YAML'
apiVersion: v1alpha1
kind: UserVolumeConfig
name: q
provisioning: {diskSelector: {match: '!system_disk'}, maxSize: 1GiB}
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      prompt: {}
YAML
truncate -s 40M /run/q.img
volctl converge --volume q --device /run/q.img -f /run/q.yaml < /dev/null > /run/q.out 2> /run/q.err &
pid=$!
# New passphrase, then its repetition: one question at a time.
for question in new repeat; do
	i=0
	until ls /run/systemd/ask-password/ask.* >/dev/null 2>&1 || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done
	echo "asked: $question"
	printf 'query-pass\n' | script -q -c "systemd-tty-ask-password-agent --query" /dev/null > /dev/null
	sleep 0.5
done
wait $pid
echo "converge $?"
grep -o 'asked on the ask-password agents' /run/q.err | head -1
echo 'END query'
