LISTEN {{.NotifyChannel}};
