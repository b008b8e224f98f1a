<#
.SYNOPSIS
    Registers `retriever prune` with Windows Task Scheduler, to run every 30 minutes.

.DESCRIPTION
    `retriever prune` removes the studies delivered and last fetched or delivered
    longer ago than the retention (the config file's "retention", default 4h), the
    studies never delivered once they are older than the hard maximum age
    ("max_age", default 7 days), and what crashed runs left behind. A study in use
    by a running fetch, store or watch is never removed. See "Keeping the cache
    small" in the README.

    The task runs as the account that runs this script, whether it is logged on or
    not (no password is stored: prune needs only the local disk), every
    -IntervalMinutes, starting now. One run at a time: if a run is still going when
    the next is due, the next is skipped. A run that was missed (the machine was
    off) starts as soon as possible.

    Run it in an elevated PowerShell ("Run as administrator"): Task Scheduler asks
    for that to register a task that runs while nobody is logged on. With
    -OnlyWhenLoggedOn, no elevation is needed, but the cache is only pruned while
    that account is logged on.

    Running it again replaces the task with the new settings.

.PARAMETER RetrieverPath
    Full path of retriever.exe. Default: the one found on PATH.

.PARAMETER IntervalMinutes
    Minutes between two runs. Default: 30.

.PARAMETER CacheDir
    The cache directory (--cache). Default: none given, so the "cache" of the config
    file is used, else %LOCALAPPDATA%\retriever of the account the task runs as.
    It must be the cache `retriever watch` uses.

.PARAMETER ConfigFile
    The config file (--config). Default: none given, so retriever looks for
    %APPDATA%\retriever\config.json, then %ProgramData%\retriever\config.json.

.PARAMETER OlderThan
    The retention for this task (--older-than, e.g. 90m, 4h, 2d). Default: the
    config file's "retention", else 4h.

.PARAMETER Destination
    The destination a study must have been delivered to before it is removed
    (--to AE@HOST:PORT). Default: the config file's "to"; with none at all, a
    study counts as delivered when it was delivered in full to any destination.

.PARAMETER LogFile
    File that each run's output is appended to (the studies removed, and what was
    kept and why). Default: %LOCALAPPDATA%\retriever-prune.log. Pass "" for no log.

.PARAMETER ForService
    Prune the cache of the Windows service that `retriever service install`
    registered with its defaults: the cache %ProgramData%\retriever\cache, the
    config file %ProgramData%\retriever\config.json and the log
    %ProgramData%\retriever\log\prune.log (unless -CacheDir, -ConfigFile or
    -LogFile say otherwise), run as NT AUTHORITY\LocalService, the service's
    account, which may modify that cache. Needs an elevated PowerShell.

.PARAMETER TaskName
    Name of the task in Task Scheduler. Default: "retriever prune".

.PARAMETER OnlyWhenLoggedOn
    Run only while the account is logged on (no elevation needed to register).

.PARAMETER Unregister
    Remove the task instead of registering it.

.EXAMPLE
    .\register-prune-task.ps1
    Every 30 minutes, with the settings of the config file.

.EXAMPLE
    .\register-prune-task.ps1 -IntervalMinutes 15 -CacheDir D:\retriever-cache -OlderThan 2h

.EXAMPLE
    .\register-prune-task.ps1 -ForService
    The cache of the service `retriever service install` registered.

.EXAMPLE
    .\register-prune-task.ps1 -Unregister
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [string] $RetrieverPath,
    [ValidateRange(1, 1440)]
    [int] $IntervalMinutes = 30,
    [string] $CacheDir,
    [string] $ConfigFile,
    [string] $OlderThan,
    [string] $Destination,
    [string] $LogFile = (Join-Path $env:LOCALAPPDATA 'retriever-prune.log'),
    [string] $TaskName = 'retriever prune',
    [switch] $OnlyWhenLoggedOn,
    [switch] $ForService,
    [switch] $Unregister
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

if ($Unregister) {
    if (Get-ScheduledTask -TaskName $TaskName -ErrorAction SilentlyContinue) {
        if ($PSCmdlet.ShouldProcess($TaskName, 'Unregister scheduled task')) {
            Unregister-ScheduledTask -TaskName $TaskName -Confirm:$false
            Write-Host "Removed the task '$TaskName'."
        }
    } else {
        Write-Host "There is no task '$TaskName'."
    }
    return
}

# The service's cache, config and log, where `retriever service install` puts
# them by default; what was given explicitly stays.
if ($ForService) {
    if ($OnlyWhenLoggedOn) { throw '-ForService runs the task as the service account: leave out -OnlyWhenLoggedOn' }
    $serviceHome = Join-Path $env:ProgramData 'retriever'
    if (-not $CacheDir) { $CacheDir = Join-Path $serviceHome 'cache' }
    if (-not $ConfigFile) { $ConfigFile = Join-Path $serviceHome 'config.json' }
    if (-not $PSBoundParameters.ContainsKey('LogFile')) { $LogFile = Join-Path $serviceHome 'log\prune.log' }
}

# retriever.exe: as given, else from PATH. The task gets the full path, since it
# does not run with this session's PATH.
if (-not $RetrieverPath) {
    $found = Get-Command retriever.exe -CommandType Application -ErrorAction SilentlyContinue |
        Select-Object -First 1
    if (-not $found) {
        throw 'retriever.exe is not on PATH; pass -RetrieverPath C:\path\to\retriever.exe'
    }
    $RetrieverPath = $found.Source
}
$RetrieverPath = (Resolve-Path -LiteralPath $RetrieverPath).ProviderPath

# A path or value for the command line, in double quotes (none of these can
# contain one: Windows forbids " in paths, and AE titles and durations have none).
function Quote([string] $value) {
    if ($value.Contains('"')) { throw "a double quote is not allowed in: $value" }
    return '"' + $value + '"'
}

# The arguments of retriever.exe. Global options go before `prune`.
$arguments = @()
if ($ConfigFile) { $arguments += '--config', (Quote (Resolve-Path -LiteralPath $ConfigFile).ProviderPath) }
if ($CacheDir) { $arguments += '--cache', (Quote $CacheDir) }
if ($Destination) { $arguments += '--to', (Quote $Destination) }
$arguments += 'prune'
if ($OlderThan) { $arguments += '--older-than', (Quote $OlderThan) }
$arguments = $arguments -join ' '

# Task Scheduler keeps no output. With a log file, run through cmd.exe to append
# both stdout and stderr to it. `cmd /s /c "..."` strips only the outer quotes, so
# the quoted paths inside stay as they are.
if ($LogFile) {
    $logDir = Split-Path -Parent $LogFile
    if ($logDir -and -not (Test-Path -LiteralPath $logDir)) {
        New-Item -ItemType Directory -Path $logDir | Out-Null
    }
    $command = "$(Quote $RetrieverPath) $arguments >> $(Quote $LogFile) 2>&1"
    $action = New-ScheduledTaskAction -Execute "$env:SystemRoot\System32\cmd.exe" -Argument "/d /s /c `"$command`""
} else {
    $action = New-ScheduledTaskAction -Execute $RetrieverPath -Argument $arguments
}

# From now, then every IntervalMinutes. Without -RepetitionDuration the
# repetition goes on indefinitely (Windows 10 / Server 2016 and later; passing
# [TimeSpan]::MaxValue there is an error).
$trigger = New-ScheduledTaskTrigger -Once -At (Get-Date).AddMinutes(1) `
    -RepetitionInterval (New-TimeSpan -Minutes $IntervalMinutes)

# One run at a time; a missed run as soon as possible; on battery too (patient
# data must not pile up on a laptop either). A run still going after one
# interval is stuck: stopping it is safe, the next run cleans up after it.
$settings = New-ScheduledTaskSettingsSet `
    -MultipleInstances IgnoreNew `
    -StartWhenAvailable `
    -AllowStartIfOnBatteries `
    -DontStopIfGoingOnBatteries `
    -ExecutionTimeLimit (New-TimeSpan -Minutes $IntervalMinutes)

# The current account. S4U: runs whether it is logged on or not, without a
# stored password (and without network credentials, which prune does not need).
# With -ForService, the service's account (ServiceAccount: no password at all).
if ($ForService) {
    $user = 'NT AUTHORITY\LOCALSERVICE'
    $logonType = 'ServiceAccount'
} else {
    $user = [System.Security.Principal.WindowsIdentity]::GetCurrent().Name
    $logonType = if ($OnlyWhenLoggedOn) { 'Interactive' } else { 'S4U' }
}
$principal = New-ScheduledTaskPrincipal -UserId $user -LogonType $logonType -RunLevel Limited

$description = "Expires the retriever study cache: removes delivered studies older than the " +
    "retention, and what crashed runs left behind. Registered by register-prune-task.ps1."
$task = New-ScheduledTask -Action $action -Trigger $trigger -Settings $settings `
    -Principal $principal -Description $description

if ($PSCmdlet.ShouldProcess($TaskName, "Register scheduled task running every $IntervalMinutes minutes as $user")) {
    Register-ScheduledTask -TaskName $TaskName -InputObject $task -Force | Out-Null
    Write-Host "Registered the task '$TaskName': every $IntervalMinutes minutes, as $user ($logonType)."
    Write-Host "  runs:  $RetrieverPath $arguments"
    if ($LogFile) { Write-Host "  log:   $LogFile" }
    Write-Host "Run it now with:  Start-ScheduledTask -TaskName '$TaskName'"
    Write-Host "Remove it with:   .\register-prune-task.ps1 -Unregister"
}
