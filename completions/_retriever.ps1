
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'retriever' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'retriever'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'retriever' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('fetch', 'fetch', [CompletionResultType]::ParameterValue, 'Pull studies and their prior studies from the cloud into the cache')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'Show what is in the cache, and its state')
            [CompletionResult]::new('store', 'store', [CompletionResultType]::ParameterValue, 'Deliver cached studies to the DICOM destination with C-STORE')
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'The router: search the cloud again and again, fetch each new study with its priors, deliver them')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove studies older than the retention from the cache, and what crashed runs left behind')
            [CompletionResult]::new('echo', 'echo', [CompletionResultType]::ParameterValue, 'Check the DICOM destination with C-ECHO')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Show the effective configuration and where each value came from (secrets shown as ***)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Is the router (`watch`) in this cache running and working? Exit status 0 yes, 1 no (for monitoring)')
            [CompletionResult]::new('service', 'service', [CompletionResultType]::ParameterValue, 'Run the router (`watch`) as a Windows service: install, uninstall, start, stop')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'retriever;fetch' {
            [CompletionResult]::new('--transfer-syntax', '--transfer-syntax', [CompletionResultType]::ParameterName, 'Ask the cloud for this transfer syntax (UID) instead of the original bytes')
            [CompletionResult]::new('--priors', '--priors', [CompletionResultType]::ParameterName, 'How many prior studies of the same patient to fetch with each study [default: 3]')
            [CompletionResult]::new('--prior-years', '--prior-years', [CompletionResultType]::ParameterName, 'How far back a prior may be, in years [default: 5]')
            [CompletionResult]::new('--prior-modality', '--prior-modality', [CompletionResultType]::ParameterName, 'Which modalities a prior may have [default: any]')
            [CompletionResult]::new('--associations', '--associations', [CompletionResultType]::ParameterName, 'Associations opened in parallel to the destination (1 to 32) [default: 2]')
            [CompletionResult]::new('--max-pdu', '--max-pdu', [CompletionResultType]::ParameterName, 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]')
            [CompletionResult]::new('--dicom-connect-timeout', '--dicom-connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to open the TCP connection to the destination [default: 10s]')
            [CompletionResult]::new('--acse-timeout', '--acse-timeout', [CompletionResultType]::ParameterName, 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]')
            [CompletionResult]::new('--dimse-timeout', '--dimse-timeout', [CompletionResultType]::ParameterName, 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]')
            [CompletionResult]::new('--store-retries', '--store-retries', [CompletionResultType]::ParameterName, 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Show which studies would be fetched and why each prior was chosen or passed over, without downloading')
            [CompletionResult]::new('--explain', '--explain', [CompletionResultType]::ParameterName, 'Show which studies would be fetched and why each prior was chosen or passed over, without downloading')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON object per line on stdout instead of text')
            [CompletionResult]::new('--store', '--store', [CompletionResultType]::ParameterName, 'Then deliver the studies made complete to the destination (--to), as `store` does')
            [CompletionResult]::new('--decompress-lossy', '--decompress-lossy', [CompletionResultType]::ParameterName, 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'retriever;ls' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON object per line instead of a table')
            [CompletionResult]::new('--wide', '--wide', [CompletionResultType]::ParameterName, 'Every column in full, however wide (the table fits 100 columns otherwise)')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;store' {
            [CompletionResult]::new('--associations', '--associations', [CompletionResultType]::ParameterName, 'Associations opened in parallel to the destination (1 to 32) [default: 2]')
            [CompletionResult]::new('--max-pdu', '--max-pdu', [CompletionResultType]::ParameterName, 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]')
            [CompletionResult]::new('--dicom-connect-timeout', '--dicom-connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to open the TCP connection to the destination [default: 10s]')
            [CompletionResult]::new('--acse-timeout', '--acse-timeout', [CompletionResultType]::ParameterName, 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]')
            [CompletionResult]::new('--dimse-timeout', '--dimse-timeout', [CompletionResultType]::ParameterName, 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]')
            [CompletionResult]::new('--store-retries', '--store-retries', [CompletionResultType]::ParameterName, 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON object per line on stdout instead of text')
            [CompletionResult]::new('--decompress-lossy', '--decompress-lossy', [CompletionResultType]::ParameterName, 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;watch' {
            [CompletionResult]::new('--interval', '--interval', [CompletionResultType]::ParameterName, 'Time between two searches of the cloud [default: 30s]')
            [CompletionResult]::new('--filter', '--filter', [CompletionResultType]::ParameterName, 'The studies to route: a QIDO-RS matching key and value, e.g. ModalitiesInStudy=CT or "StudyDate=last 24 hours"; repeat for several; replaces watch_filter of the config file [default: "StudyDate=last 24 hours"]')
            [CompletionResult]::new('--stable-age', '--stable-age', [CompletionResultType]::ParameterName, 'A study whose number of instances has not changed for this long is settled, and no longer looked at for new instances unless the cloud reports a new count [default: 60s]')
            [CompletionResult]::new('--metrics-file', '--metrics-file', [CompletionResultType]::ParameterName, 'Also keep the figures of `retriever status` in this file, in the Prometheus text format (for node_exporter''s textfile collector: a FILE ending in .prom in its directory)')
            [CompletionResult]::new('--priors', '--priors', [CompletionResultType]::ParameterName, 'How many prior studies of the same patient to fetch with each study [default: 3]')
            [CompletionResult]::new('--prior-years', '--prior-years', [CompletionResultType]::ParameterName, 'How far back a prior may be, in years [default: 5]')
            [CompletionResult]::new('--prior-modality', '--prior-modality', [CompletionResultType]::ParameterName, 'Which modalities a prior may have [default: any]')
            [CompletionResult]::new('--associations', '--associations', [CompletionResultType]::ParameterName, 'Associations opened in parallel to the destination (1 to 32) [default: 2]')
            [CompletionResult]::new('--max-pdu', '--max-pdu', [CompletionResultType]::ParameterName, 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]')
            [CompletionResult]::new('--dicom-connect-timeout', '--dicom-connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to open the TCP connection to the destination [default: 10s]')
            [CompletionResult]::new('--acse-timeout', '--acse-timeout', [CompletionResultType]::ParameterName, 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]')
            [CompletionResult]::new('--dimse-timeout', '--dimse-timeout', [CompletionResultType]::ParameterName, 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]')
            [CompletionResult]::new('--store-retries', '--store-retries', [CompletionResultType]::ParameterName, 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--once', '--once', [CompletionResultType]::ParameterName, 'One pass: search once, fetch and deliver what was found, then exit (status 0 only if all of it was delivered)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON object per line on stdout for each study delivered, instead of text')
            [CompletionResult]::new('--decompress-lossy', '--decompress-lossy', [CompletionResultType]::ParameterName, 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'retriever;prune' {
            [CompletionResult]::new('--older-than', '--older-than', [CompletionResultType]::ParameterName, 'Remove studies last fetched or delivered longer ago than this, e.g. 90m, 4h, 2d [default: "retention" in the config file, else 4h]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--dry-run', '--dry-run', [CompletionResultType]::ParameterName, 'Print what would be removed, and remove nothing')
            [CompletionResult]::new('--include-undelivered', '--include-undelivered', [CompletionResultType]::ParameterName, 'Also remove expired studies that are not delivered to the destination')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON object per removed study on stdout instead of text')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;echo' {
            [CompletionResult]::new('--associations', '--associations', [CompletionResultType]::ParameterName, 'Associations opened in parallel to the destination (1 to 32) [default: 2]')
            [CompletionResult]::new('--max-pdu', '--max-pdu', [CompletionResultType]::ParameterName, 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]')
            [CompletionResult]::new('--dicom-connect-timeout', '--dicom-connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to open the TCP connection to the destination [default: 10s]')
            [CompletionResult]::new('--acse-timeout', '--acse-timeout', [CompletionResultType]::ParameterName, 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]')
            [CompletionResult]::new('--dimse-timeout', '--dimse-timeout', [CompletionResultType]::ParameterName, 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]')
            [CompletionResult]::new('--store-retries', '--store-retries', [CompletionResultType]::ParameterName, 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--decompress-lossy', '--decompress-lossy', [CompletionResultType]::ParameterName, 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;config' {
            [CompletionResult]::new('--priors', '--priors', [CompletionResultType]::ParameterName, 'How many prior studies of the same patient to fetch with each study [default: 3]')
            [CompletionResult]::new('--prior-years', '--prior-years', [CompletionResultType]::ParameterName, 'How far back a prior may be, in years [default: 5]')
            [CompletionResult]::new('--prior-modality', '--prior-modality', [CompletionResultType]::ParameterName, 'Which modalities a prior may have [default: any]')
            [CompletionResult]::new('--associations', '--associations', [CompletionResultType]::ParameterName, 'Associations opened in parallel to the destination (1 to 32) [default: 2]')
            [CompletionResult]::new('--max-pdu', '--max-pdu', [CompletionResultType]::ParameterName, 'Largest PDU we receive, and send if the destination takes it (4096 to 4194304) [default: 16384]')
            [CompletionResult]::new('--dicom-connect-timeout', '--dicom-connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to open the TCP connection to the destination [default: 10s]')
            [CompletionResult]::new('--acse-timeout', '--acse-timeout', [CompletionResultType]::ParameterName, 'Time allowed for the destination to answer an association or release request, and for the TLS handshake with --to-tls [default: 30s]')
            [CompletionResult]::new('--dimse-timeout', '--dimse-timeout', [CompletionResultType]::ParameterName, 'Time the destination may stay silent while an instance is sent, and the most its whole answer may take [default: 60s]')
            [CompletionResult]::new('--store-retries', '--store-retries', [CompletionResultType]::ParameterName, 'Retries of an instance within one run, after "out of resources" or no answer (a study whose requests go unanswered twice in a row is given up), and of an association the destination is too busy to accept [default: 3]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'One JSON object (setting -> value, source) instead of a table')
            [CompletionResult]::new('--decompress-lossy', '--decompress-lossy', [CompletionResultType]::ParameterName, 'Decompress lossy JPEG here when the destination does not take it compressed (otherwise the cloud is asked for it in a syntax the destination takes)')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'retriever;status' {
            [CompletionResult]::new('--stale-after', '--stale-after', [CompletionResultType]::ParameterName, 'Call the router not working when no search of the cloud has worked for this long [default: 3 search intervals, at least 1m]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'The status file and the verdict, one JSON object per watch, instead of text')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;service' {
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Register the service: starts with Windows (delayed), restarted after a failure; --config and --cache are passed to it [default: %ProgramData%\retriever\config.json and ...\cache]')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop the service if it runs, and remove it')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the service')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the service; it finishes or abandons what is in flight, as after Ctrl-C')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'The service itself, as the Service Control Manager starts it (not run by hand: use `watch`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'retriever;service;install' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The service''s name')
            [CompletionResult]::new('--account', '--account', [CompletionResultType]::ParameterName, 'The account the service runs as: LocalService, NetworkService, LocalSystem, a virtual account (\"NT SERVICE\\retriever\"), or a user whose password is in RETRIEVER_SERVICE_PASSWORD [default: LocalService]')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;service;uninstall' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The service''s name')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;service;start' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The service''s name')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;service;stop' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The service''s name')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;service;run' {
            [CompletionResult]::new('--name', '--name', [CompletionResultType]::ParameterName, 'The service''s name')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'JSON config file; flags beat environment, environment beats the file')
            [CompletionResult]::new('--cloud', '--cloud', [CompletionResultType]::ParameterName, 'DICOMweb base URL of the cloud archive, e.g. https://cloud.example.org/dicom-web')
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'HTTP Basic user name (the password comes from RETRIEVER_PASSWORD, --password-file or the config file)')
            [CompletionResult]::new('--password-file', '--password-file', [CompletionResultType]::ParameterName, 'File holding the HTTP Basic password (first line)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'File holding a Bearer token (first line)')
            [CompletionResult]::new('--ca-bundle', '--ca-bundle', [CompletionResultType]::ParameterName, 'Extra CA certificates (PEM) to trust for the cloud, besides the system''s')
            [CompletionResult]::new('--client-cert', '--client-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a cloud that asks for one (mutual TLS); needs --client-key')
            [CompletionResult]::new('--client-key', '--client-key', [CompletionResultType]::ParameterName, 'The private key (PEM, unencrypted) of --client-cert; a file only this account can read')
            [CompletionResult]::new('--to', '--to', [CompletionResultType]::ParameterName, 'The DICOM destination, e.g. PACS@10.0.0.5:104')
            [CompletionResult]::new('--dest', '--dest', [CompletionResultType]::ParameterName, 'Only this destination of the config file''s `destinations` (by name; repeat for several) [default: all]')
            [CompletionResult]::new('--to-ca', '--to-ca', [CompletionResultType]::ParameterName, 'CA certificates (PEM) to trust for the destination''s TLS certificate, besides the system''s')
            [CompletionResult]::new('--to-cert', '--to-cert', [CompletionResultType]::ParameterName, 'Our client certificate (PEM) for a destination that asks for one (with --to-key)')
            [CompletionResult]::new('--to-key', '--to-key', [CompletionResultType]::ParameterName, 'The private key (PEM) of --to-cert')
            [CompletionResult]::new('--to-server-name', '--to-server-name', [CompletionResultType]::ParameterName, 'The name the destination''s TLS certificate must be for [default: the host of --to]')
            [CompletionResult]::new('--calling-ae', '--calling-ae', [CompletionResultType]::ParameterName, 'Our AE title, as the destination sees it [default: RETRIEVER]')
            [CompletionResult]::new('--cache', '--cache', [CompletionResultType]::ParameterName, 'The cache directory [default: the platform''s local cache folder]')
            [CompletionResult]::new('--jobs', '--jobs', [CompletionResultType]::ParameterName, 'Parallel downloads from the cloud [default: 4]')
            [CompletionResult]::new('--connect-timeout', '--connect-timeout', [CompletionResultType]::ParameterName, 'Time allowed to connect to the cloud [default: 10s]')
            [CompletionResult]::new('--idle-timeout', '--idle-timeout', [CompletionResultType]::ParameterName, 'Time a transfer may go without receiving any data [default: 60s]')
            [CompletionResult]::new('--retries', '--retries', [CompletionResultType]::ParameterName, 'Retries after a transient failure (connection lost, 5xx, 429) [default: 5]')
            [CompletionResult]::new('--max-instance-size', '--max-instance-size', [CompletionResultType]::ParameterName, 'Largest single instance taken from the cloud, e.g. 512MiB, 8GiB; a larger one is refused [default: 4GiB]')
            [CompletionResult]::new('--log-file', '--log-file', [CompletionResultType]::ParameterName, 'Append the log of `watch` to this file, one line per event, rotated at 10 MiB (FILE.1 to FILE.5 kept); for `service install`, the service''s log [default: %ProgramData%\retriever\log\NAME.log]')
            [CompletionResult]::new('--allow-insecure-http', '--allow-insecure-http', [CompletionResultType]::ParameterName, 'Allow plain, unencrypted http:// to a cloud that is not on this machine')
            [CompletionResult]::new('--to-tls', '--to-tls', [CompletionResultType]::ParameterName, 'DICOM TLS to the destination (--to); there is never a fallback to plain TCP')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'No progress bars, only errors on stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'retriever;service;help' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Register the service: starts with Windows (delayed), restarted after a failure; --config and --cache are passed to it [default: %ProgramData%\retriever\config.json and ...\cache]')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop the service if it runs, and remove it')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the service')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the service; it finishes or abandons what is in flight, as after Ctrl-C')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'The service itself, as the Service Control Manager starts it (not run by hand: use `watch`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'retriever;service;help;install' {
            break
        }
        'retriever;service;help;uninstall' {
            break
        }
        'retriever;service;help;start' {
            break
        }
        'retriever;service;help;stop' {
            break
        }
        'retriever;service;help;run' {
            break
        }
        'retriever;service;help;help' {
            break
        }
        'retriever;help' {
            [CompletionResult]::new('fetch', 'fetch', [CompletionResultType]::ParameterValue, 'Pull studies and their prior studies from the cloud into the cache')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'Show what is in the cache, and its state')
            [CompletionResult]::new('store', 'store', [CompletionResultType]::ParameterValue, 'Deliver cached studies to the DICOM destination with C-STORE')
            [CompletionResult]::new('watch', 'watch', [CompletionResultType]::ParameterValue, 'The router: search the cloud again and again, fetch each new study with its priors, deliver them')
            [CompletionResult]::new('prune', 'prune', [CompletionResultType]::ParameterValue, 'Remove studies older than the retention from the cache, and what crashed runs left behind')
            [CompletionResult]::new('echo', 'echo', [CompletionResultType]::ParameterValue, 'Check the DICOM destination with C-ECHO')
            [CompletionResult]::new('config', 'config', [CompletionResultType]::ParameterValue, 'Show the effective configuration and where each value came from (secrets shown as ***)')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Is the router (`watch`) in this cache running and working? Exit status 0 yes, 1 no (for monitoring)')
            [CompletionResult]::new('service', 'service', [CompletionResultType]::ParameterValue, 'Run the router (`watch`) as a Windows service: install, uninstall, start, stop')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'retriever;help;fetch' {
            break
        }
        'retriever;help;ls' {
            break
        }
        'retriever;help;store' {
            break
        }
        'retriever;help;watch' {
            break
        }
        'retriever;help;prune' {
            break
        }
        'retriever;help;echo' {
            break
        }
        'retriever;help;config' {
            break
        }
        'retriever;help;status' {
            break
        }
        'retriever;help;service' {
            [CompletionResult]::new('install', 'install', [CompletionResultType]::ParameterValue, 'Register the service: starts with Windows (delayed), restarted after a failure; --config and --cache are passed to it [default: %ProgramData%\retriever\config.json and ...\cache]')
            [CompletionResult]::new('uninstall', 'uninstall', [CompletionResultType]::ParameterValue, 'Stop the service if it runs, and remove it')
            [CompletionResult]::new('start', 'start', [CompletionResultType]::ParameterValue, 'Start the service')
            [CompletionResult]::new('stop', 'stop', [CompletionResultType]::ParameterValue, 'Stop the service; it finishes or abandons what is in flight, as after Ctrl-C')
            [CompletionResult]::new('run', 'run', [CompletionResultType]::ParameterValue, 'The service itself, as the Service Control Manager starts it (not run by hand: use `watch`)')
            break
        }
        'retriever;help;service;install' {
            break
        }
        'retriever;help;service;uninstall' {
            break
        }
        'retriever;help;service;start' {
            break
        }
        'retriever;help;service;stop' {
            break
        }
        'retriever;help;service;run' {
            break
        }
        'retriever;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
