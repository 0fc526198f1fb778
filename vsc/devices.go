package vsc

import "github.com/partita-hv/partita/vmbus/chanmsg"

// deviceNames are the VMBus device classes by interface type
// (hyperv-protocols.md, section 5).
var deviceNames = map[chanmsg.GUID]string{
	chanmsg.MustParseGUID("f8615163-df3e-46c5-913f-f2d2f965ed0e"): "synthetic network",
	chanmsg.MustParseGUID("ba6163d9-04a1-4d29-b605-72e2ffb1dc7f"): "synthetic SCSI",
	chanmsg.MustParseGUID("32412632-86cb-44a2-9b5c-50d1417354f5"): "IDE accelerator",
	chanmsg.MustParseGUID("57164f39-9115-4e78-ab55-382f3bd5422d"): "heartbeat",
	chanmsg.MustParseGUID("0e0b6031-5213-4934-818b-38d90ced39db"): "shutdown",
	chanmsg.MustParseGUID("9527e630-d0ae-497b-adce-e80ab0175caf"): "time sync",
	chanmsg.MustParseGUID("a9a0f4e7-5a45-4d96-b827-8a841e8c03e6"): "key-value pair exchange",
	chanmsg.MustParseGUID("35fa2e29-ea23-4236-96ae-3a6ebacba440"): "volume shadow copy",
	chanmsg.MustParseGUID("525074dc-8985-46e2-8057-a307dc18a502"): "dynamic memory",
	chanmsg.MustParseGUID("f912ad6d-2b17-48ea-bd65-f927a61c7684"): "synthetic keyboard",
	chanmsg.MustParseGUID("cfa8b69e-5b4a-4cc0-b98b-8ba1a1f3f95a"): "synthetic mouse",
	chanmsg.MustParseGUID("da0a7802-e377-4aac-8e77-0558eb1073f8"): "synthetic video",
	chanmsg.MustParseGUID("8b60ccf6-709f-4c11-90b5-229c959a9e6a"): "console (VMBus UART)",
	chanmsg.MustParseGUID("5c1f7d2a-9a41-4f0e-8d35-6a7e3b2c9f10"): "echo (Partita test device)",
}

// DeviceName names a device class, or returns "" for one this package
// does not know.
func DeviceName(interfaceType chanmsg.GUID) string { return deviceNames[interfaceType] }
